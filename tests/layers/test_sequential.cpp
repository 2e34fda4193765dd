// Sequential's backward hook (data-parallel overlap relies on it): called once per child, in backward
// order, after that child's parameter gradients are complete; and visit() reaches every layer.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/reference.h"
#include "layers/linear.h"
#include "layers/relu.h"

namespace cuface {
namespace {

TEST(Sequential, BackwardHookSeesEachChildAfterItsGradients) {
  Context ctx(Device::CPU);
  Sequential net;
  Linear& first = net.emplace<Linear>("0", 5, 4, true, 1);
  net.emplace<ReLU>("1");
  Linear& last = net.emplace<Linear>("2", 4, 3, true, 2);
  std::vector<const Layer*> order;
  std::vector<double> written_at_hook;  // per child: its parameters with a gradient already written
  net.set_backward_hook([&](Layer& child) {
    order.push_back(&child);
    double written = 0;
    for (NamedParameter& np : child.named_parameters()) {
      const std::vector<double> g = testing::to_doubles(np.parameter->grad);
      written += std::any_of(g.begin(), g.end(), [](double v) { return v != 0; });
    }
    written_at_hook.push_back(written);
  });
  net.forward(ctx, testing::random_tensor({6, 5}, 3));
  net.backward(ctx, testing::random_tensor({6, 3}, 4));
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], &last);
  EXPECT_EQ(order[2], &first);
  EXPECT_EQ(written_at_hook[0], 2) << "the last Linear's weight and bias gradients were written";
  EXPECT_EQ(written_at_hook[1], 0) << "ReLU has no parameters";
  EXPECT_EQ(written_at_hook[2], 2);

  int layers = 0;
  net.visit([&](Layer&) { ++layers; });
  EXPECT_EQ(layers, 4);  // the Sequential and its three children
}

}  // namespace
}  // namespace cuface
