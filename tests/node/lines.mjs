// The line protocol of the Node peers the Python tests drive (yclient.mjs, hocusclient.mjs):
// one JSON request a line on stdin ({id, cmd, ...}), one JSON answer or event a line on
// stdout; the process ends with its stdin.
import readline from 'node:readline'

/** Write one message (an answer or an event) as a line of JSON. */
export const emit = (message) => process.stdout.write(JSON.stringify(message) + '\n')

/** Answer each request line with `commands[cmd](request)`: {id, ok: true, ...result}, or
 * {id, ok: false, error} when it throws or names no command. */
export function serveCommands (commands) {
  async function handle (line) {
    let request
    try {
      request = JSON.parse(line)
      const command = commands[request.cmd]
      if (!command) throw new Error(`unknown command ${request.cmd}`)
      const result = await command(request)
      emit({ id: request.id, ok: true, ...result })
    } catch (error) {
      emit({ id: request?.id ?? null, ok: false, error: String(error?.stack ?? error) })
    }
  }
  const input = readline.createInterface({ input: process.stdin })
  input.on('line', (line) => { if (line.trim()) handle(line) })
  input.on('close', () => process.exit(0))
}
