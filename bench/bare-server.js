// The floor: a bare grpc-js Check server that answers a fixed OK CheckResponse without
// decoding the request. Nothing written over grpc-js can be faster.
const grpc = require('@grpc/grpc-js');
const ok = Buffer.from([0x0a, 0x00]); // CheckResponse{status:{}}
const server = new grpc.Server();
server.addService(
  {
    Check: {
      path: '/envoy.service.auth.v3.Authorization/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: (b) => b,
      requestDeserialize: (b) => b,
      responseSerialize: (b) => b,
      responseDeserialize: (b) => b,
    },
  },
  { Check: (_call, cb) => cb(null, ok) },
);
server.bindAsync(`127.0.0.1:${process.argv[2]}`, grpc.ServerCredentials.createInsecure(), () =>
  console.log('bare ready'),
);
