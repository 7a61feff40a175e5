/**
 * What an oversized Consul answer costs the client: a 50 MB `/v1/health/service` answer of
 * realistic entries (~1.6 KB each, about 31,000 of them), read by a real watch with the default
 * `limits.maxResponseBytes` (32 MiB: aborted while reading) and with the limits raised out of the
 * way (read and parsed whole, as before the limit existed). Each measurement runs in a fresh
 * client process, against a server in another process, so RSS is the client's own; the two
 * alternate, paired.
 *
 *   npx tsx bench/oversized-answer.ts [--rounds 3]
 *
 * Not part of `npm run bench`: it measures memory, not speed, and takes about 20 s.
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { consul } from '../src/index.js'

const MB = 1024 * 1024
const ANSWER_BYTES = 50 * MB
const self = fileURLToPath(import.meta.url)

/** A Consul-shaped agent: one small answer, then one 50 MB answer, then silence. */
async function serve(): Promise<void> {
  const entry = (i: number): string =>
    JSON.stringify({
      Node: { Node: 'n1', Address: '10.0.0.1' },
      Service: {
        ID: `x${i}`,
        Service: 'orders',
        Port: 1,
        Tags: ['v2', 'primary', 'zone-a'],
        Meta: { version: '2.14.1', team: 'billing', protocol: 'http', pad: 'p'.repeat(1_200) },
      },
      Checks: [{ Status: 'passing' }],
    })
  let n = 0
  const server = http.createServer((_req, res) => {
    n++
    res.setHeader('X-Consul-Index', String(n))
    if (n === 1) {
      res.end(`[${entry(0)}]`)
      return
    }
    if (n > 2) return
    let sent = 0
    let i = 0
    const pump = (): void => {
      while (sent < ANSWER_BYTES) {
        const piece = `${i === 0 ? '[' : ','}${entry(i++)}`
        sent += piece.length
        if (!res.write(piece)) {
          res.once('drain', pump)
          return
        }
      }
      res.end(']')
    }
    pump()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  process.send?.((server.address() as AddressInfo).port)
}

/** Watches until the big answer is applied or refused; reports the peak RSS growth in MB. */
async function client(url: string, bounded: boolean): Promise<void> {
  const before = process.memoryUsage.rss()
  let peak = before
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss())
  }, 2)
  const registry = consul({
    url,
    backoff: { initialMs: 60_000, maxMs: 60_000 },
    ...(bounded ? {} : { limits: { maxResponseBytes: 256 * MB, maxInstances: 10_000_000 } }),
  })
  const stop = new AbortController()
  let outcome = ''
  await new Promise<void>((resolve) => {
    let snapshots = 0
    registry.watch(
      'orders',
      {
        onSnapshot: (s) => {
          if (++snapshots === 2) {
            outcome = `applied (${s.instances.length} instances)`
            resolve()
          }
        },
        onError: (e) => {
          outcome = e.code
          resolve()
        },
      },
      { signal: stop.signal },
    )
  })
  peak = Math.max(peak, process.memoryUsage.rss())
  clearInterval(sampler)
  stop.abort()
  await registry.close()
  process.send?.({ growthMb: (peak - before) / MB, outcome })
}

/** Forks this file in another mode; resolves with the child and its first message. */
async function child(args: string[]): Promise<{ proc: ReturnType<typeof fork>; first: unknown }> {
  const proc = fork(self, args, { execArgv: ['--import', 'tsx'] })
  const first = await new Promise<unknown>((resolve, reject) => {
    proc.once('message', resolve)
    proc.once('exit', (code) => {
      reject(new Error(`${args[0] ?? ''} child exited (${String(code)}) before reporting`))
    })
  })
  return { proc, first }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } })
  const rounds = Number(values.rounds)
  const rows: string[] = []
  for (let r = 0; r < rounds; r++)
    for (const bounded of [true, false]) {
      const server = await child(['--serve'])
      try {
        const c = await child([
          '--client',
          `http://127.0.0.1:${String(server.first)}`,
          bounded ? 'bounded' : 'unbounded',
        ])
        const { growthMb, outcome } = c.first as { growthMb: number; outcome: string }
        await once(c.proc, 'exit')
        rows.push(
          `${bounded ? 'limit 32 MiB (default)' : 'no limit (as before)  '}  RSS growth ${growthMb.toFixed(0).padStart(4)} MB  ${outcome}`,
        )
      } finally {
        server.proc.kill()
      }
      console.log(rows.at(-1))
    }
}

const mode = process.argv[2]
if (mode === '--serve') await serve()
else if (mode === '--client') await client(process.argv[3] as string, process.argv[4] === 'bounded')
else await main()
