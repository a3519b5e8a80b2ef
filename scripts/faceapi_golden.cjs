// TensorFlow.js's own answers of face-api.js's expression model on two fixed 112x112 RGB images,
// the golden data of tests/test_peer.py (PyTorch's port must match them).
//
//   mkdir /tmp/g && cd /tmp/g && npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
//   npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
//   NODE_PATH=/tmp/g/node_modules node /work/main/scripts/faceapi_golden.cjs /tmp/g/package \
//       > tests/golden/faceapi_expression_tfjs.json
//
// The images are formulas (tests/test_peer.py builds the same ones): no image codec is needed.
const fs = require('fs');
const path = require('path');

const pkg = process.argv[2];
const faceapi = require(path.join(pkg, 'dist/face-api.node-wasm.js'));
const tf = faceapi.tf;

function goldenImages() {
  const n = 112;
  const data = new Float32Array(2 * n * n * 3);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      for (let c = 0; c < 3; c++) {
        data[((0 * n + i) * n + j) * 3 + c] = (i * 7 + j * 13 + c * 29) % 256;
        data[((1 * n + i) * n + j) * 3 + c] = Math.floor(127.5 + 100 * Math.sin(i / 9) * Math.cos(j / 7)) + 10 * c;
      }
    }
  }
  return tf.tensor4d(data, [2, n, n, 3]);
}

(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
  const dir = path.join(pkg, 'model');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'face_expression_model-weights_manifest.json')));
  const buf = fs.readFileSync(path.join(dir, 'face_expression_model.bin'));
  const net = new faceapi.FaceExpressionNet();
  net.loadFromWeightMap(tf.io.decodeWeights(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength),
    manifest[0].weights));
  const probabilities = [];
  for (const image of tf.unstack(goldenImages())) {
    probabilities.push(Array.from((await net.forward(image)).dataSync()));
  }
  const versions = { 'face-api': require(path.join(pkg, 'package.json')).version, tfjs: tf.version.tfjs };
  process.stdout.write(JSON.stringify({ versions, classes: faceapi.FACE_EXPRESSION_LABELS, probabilities }, null, 1) + '\n');
})();
