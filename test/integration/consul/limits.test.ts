/**
 * Limits on what the agent may hand us: answer bytes (enforced while reading, so memory stays
 * bounded) and entries per answer. A real HTTP server on loopback plays an agent (or a proxy in
 * front of one) that answers far too much.
 */
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode, LimitExceededError } from '../../../src/errors.js'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import { recorder } from './helpers.js'

function entry(id: string, port: number, padding = ''): Record<string, unknown> {
  return {
    Node: { Node: 'n1', Address: '10.0.0.1' },
    Service: { ID: id, Service: 'orders', Port: port, Meta: padding === '' ? {} : { padding } },
    Checks: [{ Status: 'passing' }],
  }
}

type Answer =
  | { readonly kind: 'json'; readonly body: unknown; readonly index: string }
  | { readonly kind: 'huge'; readonly bytes: number; readonly declareLength: boolean }

interface Agent {
  readonly url: string
  /** Bytes of the huge answers written before the client went away. */
  readonly written: number[]
  close(): Promise<void>
}

/** Answers `script` in order (the last answer repeats). A huge answer is a valid JSON array. */
async function agent(script: Answer[]): Promise<Agent> {
  const written: number[] = []
  let n = 0
  const server = http.createServer((_req, res) => {
    const step = script[Math.min(n++, script.length - 1)] as Answer
    res.setHeader('X-Consul-Index', String(n))
    res.setHeader('Content-Type', 'application/json')
    if (step.kind === 'json') {
      res.end(JSON.stringify(step.body))
      return
    }
    // `bytes` of JSON, written lazily with backpressure: entries of ~64 KB each.
    const chunk = JSON.stringify(entry('x', 1, 'p'.repeat(64 * 1024)))
    const count = Math.ceil(step.bytes / (chunk.length + 1))
    if (step.declareLength) res.setHeader('Content-Length', String(count * (chunk.length + 1) + 1))
    let i = 0
    let sent = 0
    const slot = written.push(0) - 1
    const pump = (): void => {
      while (i < count) {
        const piece = `${i === 0 ? '[' : ','}${chunk.replace('"x"', `"x${i}"`)}`
        i++
        sent += piece.length
        written[slot] = sent
        if (!res.write(piece)) {
          res.once('drain', pump)
          return
        }
      }
      res.end(']')
    }
    res.on('close', () => {
      written[slot] = sent
    })
    pump()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    written,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

let server: Agent | undefined
let registry: ConsulRegistry | undefined
afterEach(async () => {
  await registry?.close()
  await server?.close()
  registry = undefined
  server = undefined
})

const MB = 1024 * 1024

describe('consul limits', () => {
  it('aborts a 50 MB answer while reading it: typed error, last good set kept, RSS bounded', async () => {
    server = await agent([
      { kind: 'json', body: [entry('a', 8080), entry('b', 8081)], index: '1' },
      { kind: 'huge', bytes: 50 * MB, declareLength: false },
    ])
    registry = consul({ url: server.url, backoff: { initialMs: 60_000, maxMs: 60_000 } })
    const rec = recorder()
    global.gc?.()
    const before = process.memoryUsage.rss()
    let peak = before
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss())
    }, 5)
    try {
      registry.watch('orders', rec.listener, { signal: new AbortController().signal })
      await rec.snapshot()
      const error = await rec.error((e) => e.code === ErrorCode.LIMIT_EXCEEDED, {
        timeoutMs: 20_000,
      })
      peak = Math.max(peak, process.memoryUsage.rss())
      expect(error).toBeInstanceOf(LimitExceededError)
      expect(error).toMatchObject({
        service: 'orders',
        limit: 'limits.maxResponseBytes',
        max: 32 * MB,
      })
      expect(error.message).toMatch(/\/v1\/health\/service\/orders/)
    } finally {
      clearInterval(sampler)
    }
    const growthMb = (peak - before) / MB
    console.log(
      `[measure] 50 MB Consul answer, limit 32 MiB: RSS growth ${growthMb.toFixed(1)} MB (before ${(before / MB).toFixed(0)} MB, peak ${(peak / MB).toFixed(0)} MB); the server wrote ${((server.written[0] ?? 0) / MB).toFixed(1)} MB before the client hung up`,
    )
    // Reading stops at the limit (plus what was in flight), and memory follows.
    expect(server.written[0] ?? 0).toBeLessThan(50 * MB)
    expect(growthMb).toBeLessThan(200)
    // The last good set is all anyone saw.
    expect(rec.snapshots.map((s) => s.instances.length)).toEqual([2])
  })

  it('refuses a declared Content-Length over the limit before reading the body', async () => {
    server = await agent([
      { kind: 'json', body: [entry('a', 8080)], index: '1' },
      { kind: 'huge', bytes: 4 * MB, declareLength: true },
    ])
    registry = consul({
      url: server.url,
      limits: { maxResponseBytes: 1 * MB },
      backoff: { initialMs: 60_000, maxMs: 60_000 },
    })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await rec.snapshot()
    const error = await rec.error((e) => e.code === ErrorCode.LIMIT_EXCEEDED)
    expect(error.message).toMatch(/is \d+ bytes, over the limit/)
    expect(rec.snapshots).toHaveLength(1)
  })

  it('refuses an answer with more entries than limits.maxInstances, keeping the last good set', async () => {
    const many = Array.from({ length: 5 }, (_, i) => entry(`e${i}`, 9000 + i))
    server = await agent([
      { kind: 'json', body: [entry('a', 8080), entry('b', 8081)], index: '1' },
      { kind: 'json', body: many, index: '2' },
    ])
    registry = consul({
      url: server.url,
      limits: { maxInstances: 3 },
      backoff: { initialMs: 60_000, maxMs: 60_000 },
    })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await rec.snapshot()
    const error = await rec.error((e) => e.code === ErrorCode.LIMIT_EXCEEDED)
    expect(error).toMatchObject({ limit: 'limits.maxInstances', max: 3, service: 'orders' })
    expect(error.message).toMatch(/5 entries/)
    expect(rec.snapshots.map((s) => s.instances.length)).toEqual([2])
  })

  it('validates limits like every other option', () => {
    expect(() => consul({ limits: { maxResponseBytes: 10 } })).toThrow(/limits.maxResponseBytes/)
    expect(() => consul({ limits: { maxInstances: 0 } })).toThrow(/limits.maxInstances/)
    expect(() => consul({ limits: { maxBytes: 1 } as never })).toThrow(/limits.maxBytes/)
  })
})
