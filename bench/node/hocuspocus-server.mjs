// @hocuspocus/server 4.7.0 as bench/ compares collab with: in memory (no extension, no
// store: nothing is saved), on HOST:PORT. Any path is its WebSocket endpoint.
import { Server } from '@hocuspocus/server'

const server = new Server({
  address: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT ?? 1234),
  quiet: true
})
await server.listen()
