// A trained FaceModel as an ONNX inference graph (opset 13, IR version 7), written with our own
// protobuf writer (protobuf_writer.h; docs/export.md says why no library).
//
//   input  "input"  f32 [batch, 3, S, S] (NCHW) or [batch, S, S, 3] (NHWC): RGB pixels 0..255
//   Sub_pixel_mean, Mul_pixel_scale      (x - 127.5) / 128, the embedder's and trainer's input
//   [Transpose to NCHW]                  NHWC input only
//   conv1+bn1 -> Relu -> MaxPool -> layer1..layer4 (Conv+BN folded, Relu, Add) -> GlobalAveragePool
//   -> Flatten = pooled features [batch, F]
//   output "embedding" [batch, E]        Gemm (embedding FC with its BatchNorm1d folded in): the
//                                        model's embed(), not L2-normalised
//   output "gender" [batch, 2], "age" [batch, bins]   with heads: logits of the hidden Gemm+Relu
//                                        layers (BN folded) and the classifier, as classify()
//
// Every BatchNorm follows a convolution or a fully connected layer and uses its running statistics
// at inference, so it folds exactly (up to rounding) into that layer's weight and bias:
// w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps), computed in double.
// The input normalisation stays two explicit nodes: folded into conv1 it would be exact only away
// from the borders, where conv1's zero padding stands for a pixel of 127.5 rather than 0. Their
// names start with "Sub" and "Mul" because InsightFace's model zoo looks for exactly that among a
// model's first nodes to decide to feed raw pixels (input_mean 0, input_std 1).
//
// The topology is torchvision's ResNet (face/model/resnet.h) read from the architecture's spec and
// the state dict's names and shapes: a block has a projection shortcut where "downsample.0.weight"
// exists, the stride 2 sits on the first block of stages 2-4, and a k x k convolution pads k / 2.
// tests/face/test_export.cpp runs the file in onnxruntime against FaceModel's own forward.
#pragma once
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "face/model/face_model.h"

namespace cuface::onnx {

constexpr int kOpset = 13;
constexpr int kIrVersion = 7;

enum class Layout { NCHW, NHWC };
Layout parse_layout(const std::string& name);  // "nchw" | "nhwc"
const char* layout_name(Layout layout);

struct ExportOptions {
  int input_size = 112;                          // S: the graph's fixed height and width
  Layout layout = Layout::NCHW;
  bool heads = false;                            // the gender and age logits as extra outputs
  std::map<std::string, std::string> metadata;   // added to the model's metadata_props
};

struct ExportSummary {
  std::string input;                 // "input [batch, 3, 112, 112]"
  std::vector<std::string> outputs;  // "embedding [batch, 512]", ...
  int nodes = 0;
  int folded_batchnorms = 0;
  int64_t parameters = 0;            // elements of every initializer
  int64_t bytes = 0;                 // the serialised model
};

// Serialises `model`'s inference graph as an ONNX ModelProto onto `out`. With `heads`, a model with
// neither a gender nor an age head is an error.
ExportSummary write_onnx(FaceModel& model, const ExportOptions& options, std::ostream& out);

}  // namespace cuface::onnx
