// @hocuspocus/server 4.x as a bench target: in memory, no extensions, no authentication
// (any token is taken), on HOST:PORT. Its HTTP answer to any GET is 200 (the bench's
// health check).
import { Server } from "@hocuspocus/server";

const server = new Server({
  address: process.env.HOST ?? "127.0.0.1",
  port: Number(process.env.PORT ?? 1234),
  quiet: true,
});
await server.listen();
