/**
 * Helper process for bench/soak.ts: N keep-alive node:http instances on loopback port 0,
 * answering `ok`. They live outside the measured process, so that its descriptors, handles
 * and heap are wayfind's (and its connections') alone.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serveRequests } from './child.js'

const count = Number(process.argv[2] ?? '4')
const servers: Server[] = []
let requests = 0

for (let i = 0; i < count; i++) {
  const s = createServer((req, res) => {
    requests++
    req.resume()
    req.on('end', () => {
      res.end('ok')
    })
  })
  s.keepAliveTimeout = 60_000
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  servers.push(s)
}
serveRequests(
  (msg) => Promise.resolve(msg.type === 'stats' ? { requests } : {}),
  async () => {
    for (const s of servers) s.closeAllConnections()
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  },
)
process.send?.({ type: 'ready', ports: servers.map((s) => (s.address() as AddressInfo).port) })
