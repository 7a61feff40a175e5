/**
 * Helper process for bench/dispatch.ts: N keep-alive node:http servers on loopback port 0,
 * each answering every request with a fixed 1 KiB body. Runs outside the measuring process so
 * that its CPU is not counted as client CPU.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serveRequests } from './child.js'

const count = Number(process.argv[2] ?? '1')
const body = Buffer.alloc(1024, 'x')
const servers: Server[] = []

async function main(): Promise<void> {
  for (let i = 0; i < count; i++) {
    const s = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': body.length,
        })
        res.end(body)
      })
    })
    s.keepAliveTimeout = 60_000
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    servers.push(s)
  }
  serveRequests(
    () => Promise.resolve({}),
    async () => {
      for (const s of servers) s.closeAllConnections()
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
    },
  )
  process.send?.({ type: 'ready', ports: servers.map((s) => (s.address() as AddressInfo).port) })
}

void main()
