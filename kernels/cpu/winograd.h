// 3x3 convolutions with stride 1 and padding 1 by Winograd's minimal filtering F(2x2, 3x3) (Lavin &
// Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each 2x2 block of outputs
// takes 16 multiplications per (input, output) channel pair instead of 36, 2.25x fewer. These
// convolutions carry about half of a ResNet's arithmetic. The three passes are kernels/conv.h's, on
// NHWC tensors and OHWI filters, and conv.cpp sends every eligible convolution here.
//
// With a 4x4 input patch d (rows and columns 2t - 1 .. 2t + 2 of the image, zero outside) and a 3x3
// filter g, the 2x2 output block is
//
//   y = A^T [ (G g G^T) .* (B^T d B) ] A           (.*: elementwise over the 4 x 4 "frequencies" xi)
//
//   B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
//         [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
//         [0 -1  1  0]         [1/2 -1/2  1/2]
//         [0  1  0 -1]         [ 0    0    1 ]
//
// Summed over the input channels, the elementwise product is 16 matrix products, one per xi:
//   forward          M[xi] = V[xi] U[xi]^T        V[xi] [tiles, C]: the patches' transforms B^T d B
//                                                 U[xi] [O, C]:     the filters'  transforms G g G^T
// and the passes backward are its adjoints, through the same transforms transposed:
//   backward data    dM[xi] = (A dy A^T)[xi],  dV[xi] = dM[xi] U[xi],  dx = sum over patches of B dV B^T
//   backward filter  dU[xi] = dM[xi]^T V[xi],  dw += G^T dU G
// The transforms are additions only (and halvings in G), exact up to float rounding: the results
// differ from the direct convolution's by a few units in the last place of the largest terms.
#pragma once
#include "kernels/conv.h"

namespace cuface::cpu {

// Whether input `x` and filter `w` (OHWI) with `geometry` make a 3x3 convolution with stride 1 and
// padding 1 whose batch has enough 2x2 output blocks for the transforms to pay.
bool winograd_applies(const Shape& x, const Shape& w, const Conv2dGeometry& geometry);

void winograd_forward(const Tensor& x, const Tensor& w, Tensor& y);
void winograd_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx);  // overwrites dx
void winograd_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw);  // dw +=

}  // namespace cuface::cpu
