/**
 * Transport: HTTPS (with and without client certificates), HTTP/2 with HTTP/1.1 fallback, the
 * per-client connection cap (go-connlimit's raw 429), connection stats and the fault switches.
 */
import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { makeTestCerts, type TestCerts } from '../../support/certs.js'
import { FakeClock } from '../../support/fake-clock.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { eventually, withDeadline } from '../../support/wait.js'
import { call, dispatcher } from './helpers.js'

const TOO_MANY_MSG =
  'Your IP is issuing too many concurrent connections, please rate limit your calls\n'
const TOO_MANY =
  `HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: ${TOO_MANY_MSG.length}\r\nConnection: close\r\n\r\n` +
  TOO_MANY_MSG

let certs: TestCerts
beforeAll(() => {
  certs = makeTestCerts()
})
afterAll(async () => {
  certs.remove()
  await dispatcher.close()
})

/** Reads everything the server sends on a fresh socket until it closes. */
/** The HTTP/2 SETTINGS the server announces on a fresh TLS session. */
async function serverSettings(url: string): Promise<http2.Settings> {
  const session = http2.connect(url, { ca: certs.ca })
  try {
    return await withDeadline(
      new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve)),
      5_000,
      'SETTINGS',
    )
  } finally {
    session.close()
  }
}

function readAll(socket: net.Socket | tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => {
      data += d
    })
    socket.on('end', () => {
      resolve(data)
    })
    socket.on('close', () => {
      resolve(data)
    })
    socket.on('error', reject)
  })
}

describe('HTTPS', () => {
  let consul: ConsulTestServer | undefined
  afterEach(async () => {
    await consul?.close()
  })

  it('serves the API over TLS with the given certificate', async () => {
    consul = await startConsulServer({ tls: { key: certs.serverKey, cert: certs.serverCert } })
    expect(consul.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const agent = new Agent({ connect: { ca: certs.ca } })
    try {
      const r = await request(`${consul.url}/v1/health/service/web`, { dispatcher: agent })
      expect(r.statusCode).toBe(200)
      expect(await r.body.text()).toBe('[]')
      // An untrusting client refuses the handshake.
      await expect(
        request(`${consul.url}/v1/health/service/web`, { dispatcher: new Agent() }),
      ).rejects.toThrow()
    } finally {
      await agent.close()
    }
  })

  it('requires a client certificate signed by the CA when requestCert is set', async () => {
    consul = await startConsulServer({
      tls: { key: certs.serverKey, cert: certs.serverCert, ca: certs.ca, requestCert: true },
    })
    const anonymous = new Agent({ connect: { ca: certs.ca } })
    const withCert = new Agent({
      connect: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey },
    })
    try {
      await expect(
        request(`${consul.url}/v1/health/service/web`, { dispatcher: anonymous }).then((r) =>
          r.body.text(),
        ),
      ).rejects.toThrow()
      const ok = await request(`${consul.url}/v1/health/service/web`, { dispatcher: withCert })
      expect(ok.statusCode).toBe(200)
      await ok.body.text()
    } finally {
      await anonymous.close()
      await withCert.close()
    }
  })
})

describe('HTTPS handshake timeout (limits.https_handshake_timeout)', () => {
  it('closes a TLS connection that sends no request in time, but not an idle one after its first request', async () => {
    const clock = new FakeClock()
    await using consul = await startConsulServer({
      clock,
      tls: { key: certs.serverKey, cert: certs.serverCert },
    })
    const agent = new Agent({ connect: { ca: certs.ca } })
    try {
      // A connection that made a request stays open however long it idles.
      const r = await request(`${consul.url}/v1/status/leader`, { dispatcher: agent })
      await r.body.text()
      clock.advance(60_000)
      expect(consul.stats.openConnections()).toBe(1)
      // A connection that never sends a request is closed after 5 s.
      const silent = tls.connect({ port: consul.port, host: '127.0.0.1', ca: certs.ca })
      await withDeadline(
        new Promise((resolve) => silent.once('secureConnect', resolve)),
        5_000,
        'the handshake',
      )
      const closed = readAll(silent)
      await eventually(() => (consul.stats.openConnections() === 2 ? true : undefined), {
        what: 'two connections',
      })
      clock.advance(4_999)
      expect(consul.stats.openConnections()).toBe(2)
      clock.advance(1)
      await withDeadline(closed, 5_000, 'the server to close the silent connection')
      await eventually(() => (consul.stats.openConnections() === 1 ? true : undefined), {
        what: 'one connection left',
      })
    } finally {
      await agent.close()
    }
  })
})

describe('HTTP/2', () => {
  let consul: ConsulTestServer
  afterEach(async () => {
    await consul.close()
  })

  it('negotiates h2 by ALPN and answers with the same headers; falls back to HTTP/1.1', async () => {
    consul = await startConsulServer({
      tls: { key: certs.serverKey, cert: certs.serverCert },
      http2: true,
    })
    consul.registerService({ name: 'web', port: 80 })
    const session = http2.connect(consul.url, { ca: certs.ca })
    try {
      const { headers, body } = await withDeadline(
        new Promise<{ headers: http2.IncomingHttpHeaders; body: string }>((resolve, reject) => {
          const stream = session.request({ ':path': '/v1/health/service/web' })
          let h: http2.IncomingHttpHeaders = {}
          let body = ''
          stream.setEncoding('utf8')
          stream.on('response', (x) => {
            h = x
          })
          stream.on('data', (d: string) => {
            body += d
          })
          stream.on('end', () => {
            resolve({ headers: h, body })
          })
          stream.on('error', reject)
          stream.end()
        }),
        5_000,
        'an h2 response',
      )
      expect(session.alpnProtocol).toBe('h2')
      expect(headers[':status']).toBe(200)
      expect(Number(headers['x-consul-index'])).toBeGreaterThan(0)
      expect(JSON.parse(body)).toHaveLength(1)
      expect(consul.stats.requests.at(-1)!.httpVersion).toBe('2.0')
    } finally {
      session.close()
    }
    const h1 = new Agent({ connect: { ca: certs.ca } })
    try {
      const r = await request(`${consul.url}/v1/health/service/web`, { dispatcher: h1 })
      expect(r.statusCode).toBe(200)
      await r.body.text()
      expect(consul.stats.requests.at(-1)!.httpVersion).toBe('1.1')
    } finally {
      await h1.close()
    }
  })

  it('multiplexes blocking queries from undici (allowH2) over one connection', async () => {
    consul = await startConsulServer({
      tls: { key: certs.serverKey, cert: certs.serverCert },
      http2: true,
    })
    consul.registerService({ name: 'a', port: 1 })
    consul.registerService({ name: 'b', port: 2 })
    // undici 7 caps concurrent h2 streams per connection at `pipelining` (default 1).
    const h2 = new Agent({
      allowH2: true,
      connections: 1,
      pipelining: 10,
      connect: { ca: certs.ca },
    })
    try {
      const first = await request(`${consul.url}/v1/health/service/a`, { dispatcher: h2 })
      const index = Number(first.headers['x-consul-index'])
      await first.body.text()
      const queries = ['a', 'b', 'a', 'b'].map((s) =>
        request(`${consul.url}/v1/health/service/${s}?index=${index + 100}&wait=30s`, {
          dispatcher: h2,
        }).then(async (r) => {
          await r.body.text()
          return r.statusCode
        }),
      )
      await consul.waitForBlockingQueries(4)
      expect(consul.stats.openConnections()).toBe(1)
      expect(consul.stats.requests.at(-1)!.httpVersion).toBe('2.0')
      for (let i = 0; i < 101; i++) {
        consul.registerService({ name: 'a', id: `a${i}`, port: 10 + i })
        consul.registerService({ name: 'b', id: `b${i}`, port: 10 + i })
      }
      expect(await withDeadline(Promise.all(queries), 5_000, 'all h2 blocking queries')).toEqual([
        200, 200, 200, 200,
      ])
    } finally {
      await h2.close()
    }
  })
})

describe('wire format', () => {
  it("sends header names in Go's canonical case and error bodies as text/plain", async () => {
    await using consul = await startConsulServer()
    const raw = async (path: string): Promise<string> => {
      const socket = net.connect(consul.port, '127.0.0.1')
      socket.write(`GET ${path} HTTP/1.1\r\nHost: consul\r\nConnection: close\r\n\r\n`)
      return withDeadline(readAll(socket), 5_000, 'a raw response')
    }
    const ok = await raw('/v1/health/service/web')
    for (const name of [
      'X-Consul-Index',
      'X-Consul-Knownleader',
      'X-Consul-Lastcontact',
      'X-Consul-Effective-Consistency',
      'X-Consul-Query-Backend',
      'X-Consul-Default-Acl-Policy',
      'Content-Type',
    ]) {
      expect(ok).toMatch(new RegExp(`\r\n${name}: `))
    }
    expect(ok).toMatch(/\r\n\r\n\[\]$/)
    const bad = await raw('/v1/health/service/web?index=x')
    expect(bad).toMatch(/^HTTP\/1\.1 400 /)
    expect(bad).toMatch(/\r\nContent-Type: text\/plain; charset=utf-8\r\n/)
    expect(bad).toMatch(/\r\n\r\nInvalid index$/)
  })
})

describe('HTTP/2 stream limit', () => {
  it("advertises Go's 250 concurrent streams: further blocking queries wait in the client", async () => {
    await using consul = await startConsulServer({
      tls: { key: certs.serverKey, cert: certs.serverCert },
      http2: true,
      http2MaxConcurrentStreams: 5,
    })
    expect((await serverSettings(consul.url)).maxConcurrentStreams).toBe(5)
    consul.registerService({ name: 'a', port: 1 })
    const h2 = new Agent({
      allowH2: true,
      connections: 1,
      pipelining: 10,
      connect: { ca: certs.ca },
    })
    try {
      // One request first, so the client has the server's SETTINGS before it opens more streams
      // (streams opened before that are refused with REFUSED_STREAM, by Go as by node:http2).
      await request(`${consul.url}/v1/status/leader`, { dispatcher: h2 }).then((r) => r.body.text())
      const index = consul.index
      const polls = Array.from({ length: 7 }, () =>
        request(`${consul.url}/v1/health/service/a?index=${index}&wait=30s`, {
          dispatcher: h2,
        }).then((r) => r.body.text()),
      )
      await consul.waitForBlockingQueries(5)
      const sent = (): number =>
        consul.stats.requests.filter((r) => r.path === '/v1/health/service/a').length
      expect(sent()).toBe(5)
      expect(consul.stats.openConnections()).toBe(1)
      // A write answers the five; the two held back by the client then go out and answer at once.
      consul.registerService({ name: 'a', id: 'a2', port: 2 })
      const bodies = await withDeadline(Promise.all(polls), 5_000, 'all polls')
      expect(bodies.map((b) => (JSON.parse(b) as unknown[]).length)).toEqual([2, 2, 2, 2, 2, 2, 2])
      expect(sent()).toBe(7)
    } finally {
      await h2.close()
    }
  })

  it('defaults to 250', async () => {
    await using consul = await startConsulServer({
      tls: { key: certs.serverKey, cert: certs.serverCert },
      http2: true,
    })
    expect((await serverSettings(consul.url)).maxConcurrentStreams).toBe(250)
  })
})

describe('connection cap (limits.http_max_conns_per_client)', () => {
  let consul: ConsulTestServer
  afterEach(async () => {
    await consul.close()
  })

  it("answers the connection past the cap with go-connlimit's raw 429 and closes it", async () => {
    consul = await startConsulServer({ maxConnsPerClient: 3 })
    const held = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<net.Socket>((resolve) => {
            const s = net.connect(consul.port, '127.0.0.1', () => {
              resolve(s)
            })
          }),
      ),
    )
    try {
      await eventually(() => (consul.stats.openConnections() === 3 ? true : undefined), {
        what: '3 open connections',
      })
      const extra = net.connect(consul.port, '127.0.0.1')
      expect(await withDeadline(readAll(extra), 5_000, 'the 429')).toBe(TOO_MANY)
      expect(consul.stats.rejectedConnections()).toBe(1)
      expect(consul.stats.openConnections()).toBe(3)
      // Rejected connections are not counted; freeing one slot lets the next client in.
      held[0]!.destroy()
      await eventually(() => (consul.stats.openConnections() === 2 ? true : undefined), {
        what: 'a freed slot',
      })
      const agent = new Agent()
      try {
        const r = await request(`${consul.url}/v1/catalog/services`, { dispatcher: agent })
        expect(r.statusCode).toBe(200)
        await r.body.text()
      } finally {
        await agent.close()
      }
      expect(consul.stats.peakConnections()).toBe(3)
    } finally {
      for (const s of held) s.destroy()
    }
  })

  it('counts idle keep-alive sockets, and an HTTP client past the cap sees 429', async () => {
    consul = await startConsulServer({ maxConnsPerClient: 2 })
    const first = await call(consul, '/v1/catalog/services')
    const pinned = new Agent({ connections: 2 })
    const other = new Agent()
    try {
      // Two parallel requests open two keep-alive sockets that then sit idle.
      await Promise.all(
        [0, 1].map(() =>
          request(`${consul.url}/v1/health/service/x?index=${first.index}&wait=50ms`, {
            dispatcher: pinned,
          }).then((r) => r.body.text()),
        ),
      )
      await eventually(() => (consul.stats.openConnections() >= 2 ? true : undefined), {
        what: 'idle sockets',
      })
      const r = await request(`${consul.url}/v1/catalog/services`, { dispatcher: other }).catch(
        (err: unknown) => err,
      )
      if (r instanceof Error) {
        // The 429 can arrive before undici finished writing; then it reports the closed socket.
        expect(consul.stats.rejectedConnections()).toBeGreaterThan(0)
      } else {
        const reply = r as Awaited<ReturnType<typeof request>>
        expect(reply.statusCode).toBe(429)
        expect(await reply.body.text()).toBe(TOO_MANY_MSG)
      }
    } finally {
      await pinned.close()
      await other.close()
    }
  })

  it('writes the 429 through TLS on an HTTPS agent', async () => {
    consul = await startConsulServer({
      maxConnsPerClient: 1,
      tls: { key: certs.serverKey, cert: certs.serverCert },
    })
    const held = await new Promise<tls.TLSSocket>((resolve) => {
      const s = tls.connect({ port: consul.port, host: '127.0.0.1', ca: certs.ca }, () => {
        resolve(s)
      })
    })
    try {
      await eventually(() => (consul.stats.openConnections() === 1 ? true : undefined), {
        what: 'one TLS connection',
      })
      const extra = tls.connect({ port: consul.port, host: '127.0.0.1', ca: certs.ca })
      expect(await withDeadline(readAll(extra), 5_000, 'the TLS 429')).toBe(TOO_MANY)
    } finally {
      held.destroy()
    }
  })
})

describe('faults', () => {
  let consul: ConsulTestServer
  afterEach(async () => {
    await consul.close()
  })

  it('failNext and rateLimitNext answer the next requests with errors, then recover', async () => {
    consul = await startConsulServer()
    consul.faults.failNext(2)
    consul.faults.rateLimitNext(1)
    const statuses: [number, string][] = []
    for (let i = 0; i < 4; i++) {
      const r = await call(consul, '/v1/health/service/web')
      statuses.push([r.status, r.text])
    }
    expect(statuses).toEqual([
      [500, 'No cluster leader'],
      [500, 'No cluster leader'],
      [429, 'Rate limit reached, try again later'],
      [200, '[]'],
    ])
    consul.faults.failNext(1, 503, '')
    expect((await call(consul, '/v1/health/service/web')).status).toBe(503)
  })

  it('dropNextRequests destroys the connection without an answer', async () => {
    consul = await startConsulServer()
    consul.faults.dropNextRequests(1)
    await expect(call(consul, '/v1/health/service/web')).rejects.toThrow()
    expect((await call(consul, '/v1/health/service/web')).status).toBe(200)
  })

  it('dropConnections cuts blocking queries in flight', async () => {
    consul = await startConsulServer()
    const first = await call(consul, '/v1/health/service/web')
    const pending = call(consul, `/v1/health/service/web?index=${first.index}&wait=10m`).then(
      () => 'answered',
      () => 'cut',
    )
    await consul.waitForBlockingQueries(1)
    consul.faults.dropConnections()
    expect(await withDeadline(pending, 5_000, 'the cut')).toBe('cut')
    await eventually(() => (consul.stats.openConnections() === 0 ? true : undefined), {
      what: 'no open connections',
    })
    await eventually(() => (consul.stats.blockingQueries() === 0 ? true : undefined), {
      what: 'the parked query released',
    })
  })

  it('stall accepts requests and never answers until the server closes', async () => {
    consul = await startConsulServer()
    consul.faults.stall = true
    const ac = new AbortController()
    const seen = new Promise((resolve) => consul.events.once('request', resolve))
    const pending = call(consul, '/v1/health/service/web', { signal: ac.signal }).then(
      () => 'answered',
      () => 'failed',
    )
    await withDeadline(seen, 5_000, 'the stalled request to arrive')
    expect(consul.stats.requests).toHaveLength(1)
    consul.faults.stall = false
    expect((await call(consul, '/v1/health/service/web')).status).toBe(200)
    await consul.close()
    expect(await withDeadline(pending, 5_000, 'the stalled request to fail on close')).toBe(
      'failed',
    )
  })
})
