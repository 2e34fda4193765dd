#include "face/export/onnx.h"

#include <cmath>
#include <cstdio>
#include <optional>
#include <string_view>
#include <tuple>

#include "engine/error.h"
#include "face/export/protobuf_writer.h"
#include "face/loader/upload.h"
#include "face/train/checkpoint.h"

namespace cuface::onnx {

namespace {

// Field numbers and enum values of onnx/onnx.proto used here.
namespace model_field { constexpr int kIrVersion = 1, kProducerName = 2, kProducerVersion = 3, kDocString = 6,
                                      kGraph = 7, kOpsetImport = 8, kMetadataProps = 14; }
namespace graph_field { constexpr int kNode = 1, kName = 2, kInitializer = 5, kInput = 11, kOutput = 12; }
namespace node_field { constexpr int kInput = 1, kOutput = 2, kName = 3, kOpType = 4, kAttribute = 5; }
namespace attribute_field { constexpr int kName = 1, kInt = 3, kInts = 8, kType = 20; }
namespace attribute_type { constexpr int kInt = 2, kInts = 7; }
namespace tensor_field { constexpr int kDims = 1, kDataType = 2, kName = 8, kRawData = 9; }
constexpr int kFloat = 1;  // TensorProto.DataType FLOAT
// ValueInfoProto {name 1, type 2}, TypeProto {tensor_type 1}, TypeProto.Tensor {elem_type 1, shape 2},
// TensorShapeProto {dim 1}, Dimension {dim_value 1, dim_param 2}, OperatorSetIdProto {version 2},
// StringStringEntryProto {key 1, value 2}.

ProtoWriter int_attribute(const char* name, int64_t value) {
  ProtoWriter a;
  a.bytes_field(attribute_field::kName, name);
  a.varint_field(attribute_field::kType, attribute_type::kInt);
  a.varint_field(attribute_field::kInt, value);
  return a;
}

ProtoWriter ints_attribute(const char* name, const std::vector<int64_t>& values) {
  ProtoWriter a;
  a.bytes_field(attribute_field::kName, name);
  a.varint_field(attribute_field::kType, attribute_type::kInts);
  for (int64_t v : values) a.varint_field(attribute_field::kInts, v);
  return a;
}

// A graph input or output: f32 with the given dimensions, -1 standing for the dynamic "batch".
ProtoWriter value_info(const std::string& name, const std::vector<int64_t>& dims) {
  ProtoWriter shape;
  for (int64_t d : dims) {
    ProtoWriter dim;
    if (d < 0)
      dim.bytes_field(2, "batch");
    else
      dim.varint_field(1, d);
    shape.message_field(1, dim);
  }
  ProtoWriter tensor;
  tensor.varint_field(1, kFloat);
  tensor.message_field(2, shape);
  ProtoWriter type;
  type.message_field(1, tensor);
  ProtoWriter info;
  info.bytes_field(1, name);
  info.message_field(2, type);
  return info;
}

std::vector<int64_t> dims_of(const Tensor& t) {
  std::vector<int64_t> dims;
  for (int axis = 0; axis < t.rank(); ++axis) dims.push_back(t.size(axis));
  return dims;
}

std::string shape_text(const std::vector<int64_t>& dims) {
  std::string text;
  for (int64_t d : dims) text += (text.empty() ? "[" : ", ") + (d < 0 ? std::string("batch") : std::to_string(d));
  return text + "]";
}

// The graph under construction: nodes and initializers in order, parameters read by name from the
// model's state dict (torchvision names, convolution weights OIHW as ONNX's Conv wants them).
class GraphBuilder {
 public:
  explicit GraphBuilder(FaceModel& model) {
    for (auto& [name, tensor] : export_state(model)) state_.emplace(name, tensor);
    name_.bytes_field(graph_field::kName, "cuface");
  }

  bool has(const std::string& name) const { return state_.count(name) != 0; }
  const Tensor& parameter(const std::string& name) const {
    auto it = state_.find(name);
    CUFACE_CHECK(it != state_.end(), "ONNX export: the model has no parameter '" + name + "'");
    return it->second;
  }

  // A constant tensor of the graph; returns its name.
  std::string initializer(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& values) {
    ProtoWriter t;
    for (int64_t d : dims) t.varint_field(tensor_field::kDims, d);
    t.varint_field(tensor_field::kDataType, kFloat);
    t.bytes_field(tensor_field::kName, name);
    // raw_data is little-endian IEEE 754, the host's own layout on every machine cuface builds for.
    t.bytes_field(tensor_field::kRawData,
                  std::string_view(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    initializers_.message_field(graph_field::kInitializer, t);
    summary_.parameters += int64_t(values.size());
    return name;
  }

  // A node named after its single output; returns the output's name.
  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                   const std::vector<ProtoWriter>& attributes = {}) {
    ProtoWriter n;
    for (const std::string& in : inputs) n.bytes_field(node_field::kInput, in);
    n.bytes_field(node_field::kOutput, output);
    n.bytes_field(node_field::kName, output);
    n.bytes_field(node_field::kOpType, op);
    for (const ProtoWriter& a : attributes) n.message_field(node_field::kAttribute, a);
    nodes_.message_field(graph_field::kNode, n);
    ++summary_.nodes;
    return output;
  }

  // Layer `layer` (weight [O, ...], optional bias [O]) followed by BatchNorm `bn`, folded into one
  // weight and bias: the initializers "<layer>.weight" and "<layer>.bias".
  std::pair<std::string, std::string> folded(const std::string& layer, const std::string& bn) {
    const Tensor& w = parameter(layer + ".weight");
    const float* gamma = parameter(bn + ".weight").data<float>();
    const float* beta = parameter(bn + ".bias").data<float>();
    const float* mean = parameter(bn + ".running_mean").data<float>();
    const float* var = parameter(bn + ".running_var").data<float>();
    const float* bias = has(layer + ".bias") ? parameter(layer + ".bias").data<float>() : nullptr;
    const int64_t rows = w.size(0), per_row = w.numel() / rows;
    const double eps = BatchNormOptions{}.eps;  // every BatchNorm of a FaceModel has the default
    std::vector<float> weight(static_cast<size_t>(w.numel())), shift(static_cast<size_t>(rows));
    for (int64_t o = 0; o < rows; ++o) {
      const double s = double(gamma[o]) / std::sqrt(double(var[o]) + eps);
      for (int64_t k = 0; k < per_row; ++k)
        weight[size_t(o * per_row + k)] = float(double(w.data<float>()[o * per_row + k]) * s);
      shift[size_t(o)] = float(((bias ? double(bias[o]) : 0.0) - double(mean[o])) * s + double(beta[o]));
    }
    ++summary_.folded_batchnorms;
    return {initializer(layer + ".weight", dims_of(w), weight), initializer(layer + ".bias", {rows}, shift)};
  }

  // Convolution `conv` + BatchNorm `bn` (+ ReLU): a k x k convolution pads k / 2, as torchvision's.
  std::string conv_bn(const std::string& x, const std::string& conv, const std::string& bn, int64_t stride,
                      bool relu) {
    const int64_t k = parameter(conv + ".weight").size(2), pad = k / 2;
    const auto [weight, bias] = folded(conv, bn);
    const std::string y = node("Conv", {x, weight, bias}, conv,
                               {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {stride, stride}),
                                ints_attribute("pads", {pad, pad, pad, pad})});
    return relu ? node("Relu", {y}, conv + ".relu") : y;
  }

  // Fully connected `linear` (+ BatchNorm `bn` folded in, when given): Gemm(x, W^T) + b.
  std::string gemm(const std::string& x, const std::string& linear, const std::optional<std::string>& bn,
                   const std::string& output) {
    std::string weight, bias;
    if (bn) {
      std::tie(weight, bias) = folded(linear, *bn);
    } else {
      weight = copy(linear + ".weight");
      bias = copy(linear + ".bias");
    }
    return node("Gemm", {x, weight, bias}, output, {int_attribute("transB", 1)});
  }

  void input(const std::string& name, const std::vector<int64_t>& dims) {
    inputs_.message_field(graph_field::kInput, value_info(name, dims));
    summary_.input = name + " " + shape_text(dims);
  }
  void output(const std::string& name, const std::vector<int64_t>& dims) {
    outputs_.message_field(graph_field::kOutput, value_info(name, dims));
    summary_.outputs.push_back(name + " " + shape_text(dims));
  }

  // The GraphProto's fields. A message is the concatenation of its fields, so the parts are written
  // one after the other rather than first copied into one buffer (the initializers hold every weight).
  std::vector<std::string_view> graph_parts() const {
    return {name_.bytes(), nodes_.bytes(), initializers_.bytes(), inputs_.bytes(), outputs_.bytes()};
  }

  ExportSummary& summary() { return summary_; }

 private:
  std::string copy(const std::string& name) {
    const Tensor& t = parameter(name);
    return initializer(name, dims_of(t), std::vector<float>(t.data<float>(), t.data<float>() + t.numel()));
  }

  std::map<std::string, Tensor> state_;
  ProtoWriter name_, nodes_, initializers_, inputs_, outputs_;
  ExportSummary summary_;
};

// A gender or age branch: hidden Gemm (BN folded) + Relu per width, then the classifier's logits.
void classifier_branch(GraphBuilder& g, const std::string& features, const std::string& task, size_t hidden,
                       int64_t classes) {
  std::string x = features;
  for (size_t i = 0; i < hidden; ++i) {
    const std::string linear = task + ".hidden." + std::to_string(2 * i + 1);
    const std::string bn = task + ".hidden." + std::to_string(2 * i + 2);
    x = g.node("Relu", {g.gemm(x, linear, bn, linear)}, bn);
  }
  g.gemm(x, task + ".head", std::nullopt, task);
  g.output(task, {-1, classes});
}

std::string format_float(float value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", double(value));
  return text;
}

}  // namespace

Layout parse_layout(const std::string& name) {
  if (name == "nchw") return Layout::NCHW;
  if (name == "nhwc") return Layout::NHWC;
  throw Error("--layout: expected nchw or nhwc, got '" + name + "'");
}

const char* layout_name(Layout layout) { return layout == Layout::NCHW ? "NCHW" : "NHWC"; }

ExportSummary write_onnx(FaceModel& model, const ExportOptions& options, std::ostream& out) {
  const FaceModelOptions& m = model.options();
  CUFACE_CHECK(!options.heads || m.gender || m.age_classes > 0,
               "--heads: the model has neither a gender nor an age head (export it without --heads)");
  const int64_t S = options.input_size;
  const bool nhwc = options.layout == Layout::NHWC;
  GraphBuilder g(model);

  // Raw pixels in; the embedder's normalisation (face/loader/upload.h) as the first two nodes.
  const std::vector<int64_t> input_dims = nhwc ? std::vector<int64_t>{-1, S, S, 3} : std::vector<int64_t>{-1, 3, S, S};
  g.input("input", input_dims);
  const NormaliseOptions normalise;
  std::string x = g.node("Sub", {"input", g.initializer("pixel_mean", {}, {normalise.mean})}, "Sub_pixel_mean");
  x = g.node("Mul", {x, g.initializer("pixel_scale", {}, {normalise.scale})}, "Mul_pixel_scale");
  if (nhwc) x = g.node("Transpose", {x}, "nchw", {ints_attribute("perm", {0, 3, 1, 2})});

  // The backbone, as face/model/resnet.cpp builds it.
  const ResNetSpec spec = resnet_spec(m.arch);
  x = g.conv_bn(x, "conv1", "bn1", 2, true);
  x = g.node("MaxPool", {x}, "maxpool",
             {ints_attribute("kernel_shape", {3, 3}), ints_attribute("strides", {2, 2}),
              ints_attribute("pads", {1, 1, 1, 1})});
  for (int stage = 0; stage < 4; ++stage)
    for (int b = 0; b < spec.blocks[size_t(stage)]; ++b) {
      const std::string p = "layer" + std::to_string(stage + 1) + "." + std::to_string(b);
      const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
      std::string y;
      if (spec.bottleneck) {
        y = g.conv_bn(x, p + ".conv1", p + ".bn1", 1, true);
        y = g.conv_bn(y, p + ".conv2", p + ".bn2", stride, true);
        y = g.conv_bn(y, p + ".conv3", p + ".bn3", 1, false);
      } else {
        y = g.conv_bn(x, p + ".conv1", p + ".bn1", stride, true);
        y = g.conv_bn(y, p + ".conv2", p + ".bn2", 1, false);
      }
      const std::string shortcut = g.has(p + ".downsample.0.weight")
                                       ? g.conv_bn(x, p + ".downsample.0", p + ".downsample.1", stride, false)
                                       : x;
      x = g.node("Relu", {g.node("Add", {y, shortcut}, p + ".add")}, p);
    }
  const std::string features =
      g.node("Flatten", {g.node("GlobalAveragePool", {x}, "avgpool")}, "features", {int_attribute("axis", 1)});

  // The FR branch as FaceModel::embed runs it (dropout is the identity at inference).
  g.gemm(features, "embedding.1", "embedding.2", "embedding");
  g.output("embedding", {-1, m.embedding_size});
  if (options.heads) {
    if (m.gender) classifier_branch(g, features, "gender", m.gender_hidden.size(), 2);
    if (m.age_classes > 0) classifier_branch(g, features, "age", m.age_hidden.size(), m.age_classes);
  }

  std::map<std::string, std::string> metadata{
      {"arch", m.arch},
      {"embedding_size", std::to_string(m.embedding_size)},
      {"input", std::string("float32 RGB pixels 0..255, ") + shape_text(input_dims) + " (" +
                    layout_name(options.layout) + ")"},
      {"normalisation", "in the graph: (x - " + format_float(normalise.mean) + ") * " + format_float(normalise.scale) +
                            " (nodes Sub_pixel_mean, Mul_pixel_scale); feed raw pixels"},
      {"batchnorm", "folded into the preceding Conv / Gemm (running statistics)"},
      {"embedding", "the embedding layer's output, not L2-normalised: normalise before comparing by cosine"}};
  for (const auto& [key, value] : options.metadata) metadata[key] = value;

  ProtoWriter head;
  head.varint_field(model_field::kIrVersion, kIrVersion);
  head.bytes_field(model_field::kProducerName, "cuface");
  head.bytes_field(model_field::kProducerVersion, CUFACE_VERSION);
  head.bytes_field(model_field::kDocString, "cuface face model: " + m.arch + " backbone, " +
                                                std::to_string(m.embedding_size) + "-d embedding");
  ProtoWriter opset;
  opset.varint_field(2, kOpset);  // the default domain ("")
  head.message_field(model_field::kOpsetImport, opset);
  for (const auto& [key, value] : metadata) {
    ProtoWriter entry;
    entry.bytes_field(1, key);
    entry.bytes_field(2, value);
    head.message_field(model_field::kMetadataProps, entry);
  }
  uint64_t graph_bytes = 0;
  for (std::string_view part : g.graph_parts()) graph_bytes += part.size();
  head.bytes_field_header(model_field::kGraph, graph_bytes);
  out.write(head.bytes().data(), std::streamsize(head.size()));
  for (std::string_view part : g.graph_parts()) out.write(part.data(), std::streamsize(part.size()));

  ExportSummary summary = g.summary();
  summary.bytes = int64_t(head.size() + graph_bytes);
  return summary;
}

}  // namespace cuface::onnx
