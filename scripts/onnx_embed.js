// Runs an ONNX model exported by `cuface export --format onnx` in onnxruntime (the onnxruntime-node
// package, CPU) on face crops: the independent runtime tests/face/test_export.cpp checks the export
// against, and the onnxruntime side of the throughput figure in bench/RESULTS.md.
//
//   node scripts/onnx_embed.js MODEL.onnx CROPS N SIZE nchw|nhwc THREADS [SECONDS]
//
// CROPS is a file of N x SIZE x SIZE x 3 bytes: RGB pixels, rows top to bottom, as cuface decodes
// images. They are laid out as the model's input wants them (nchw or nhwc) as float32 0..255 pixels
// (the model normalises them itself). THREADS is onnxruntime's intra-op thread count.
// Without SECONDS: one run, every output printed as JSON {"name": {"dims": [...], "data": [...]}}.
// With SECONDS: the same batch run repeatedly for that long after one warm-up run; prints
// {"runs", "seconds", "images_per_second", "cpu_seconds", "images_per_cpu_second"} (CPU time of the
// whole process: robust where other work shares the cores).
// onnxruntime-node is found through NODE_PATH (scripts/setup.sh --all installs it under
// build-tools/onnxruntime/node_modules).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function pixels(crops, n, size, layout) {
  const out = new Float32Array(crops.length);
  for (let i = 0; i < n; ++i)
    for (let y = 0; y < size; ++y)
      for (let x = 0; x < size; ++x)
        for (let c = 0; c < 3; ++c) {
          const hwc = ((i * size + y) * size + x) * 3 + c;
          const chw = ((i * 3 + c) * size + y) * size + x;
          out[layout === 'nhwc' ? hwc : chw] = crops[hwc];
        }
  return out;
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length < 6) throw new Error('usage: onnx_embed.js MODEL.onnx CROPS N SIZE nchw|nhwc THREADS [SECONDS]');
  const [model, cropsFile, layout] = [args[0], args[1], args[4]];
  const [n, size, threads] = [Number(args[2]), Number(args[3]), Number(args[5])];
  const crops = fs.readFileSync(cropsFile);
  if (crops.length !== n * size * size * 3)
    throw new Error(`${cropsFile}: ${crops.length} bytes, expected ${n} x ${size} x ${size} x 3`);
  const dims = layout === 'nhwc' ? [n, size, size, 3] : [n, 3, size, size];

  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Idle pool threads sleep, as cuface's OpenMP threads do (it runs with OMP_WAIT_POLICY=PASSIVE).
    extra: {session: {intra_op: {allow_spinning: '0'}}},
  });
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', pixels(crops, n, size, layout), dims)};

  if (args.length < 7) {
    const results = await session.run(feeds);
    const out = {};
    for (const name of session.outputNames)
      out[name] = {dims: results[name].dims, data: Array.from(results[name].data)};
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  const seconds = Number(args[6]);
  await session.run(feeds);  // warm-up: allocations and kernel selection
  let runs = 0;
  const start = process.hrtime.bigint(), cpuStart = process.cpuUsage();
  let elapsed = 0;
  while (elapsed < seconds) {
    await session.run(feeds);
    ++runs;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  const cpu = process.cpuUsage(cpuStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;  // every thread of the process
  process.stdout.write(JSON.stringify({runs, seconds: elapsed, images_per_second: (runs * n) / elapsed,
                                       cpu_seconds: cpuSeconds, images_per_cpu_second: (runs * n) / cpuSeconds}) + '\n');
}

main().catch((error) => {
  process.stderr.write(`onnx_embed.js: ${error.message}\n`);
  process.exit(1);
});
