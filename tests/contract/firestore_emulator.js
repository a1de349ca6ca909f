// Starts @firestore-emulator/server on 127.0.0.1 and an OS-chosen free port, prints
// "listening <port>" once it accepts connections, and runs until it is terminated.
// (FirestoreServer.start(port) binds 0.0.0.0 and hides the port it got, so bind its gRPC
// server directly.)
const { FirestoreServer } = require("@firestore-emulator/server");
const { ServerCredentials } = require("@grpc/grpc-js");

const emulator = new FirestoreServer();
emulator.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(`listening ${port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    emulator.stop();
    process.exit(0);
  });
}
