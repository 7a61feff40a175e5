/**
 * ResponseReader (src/registry/consul/response-reader.ts): one answer read whole through undici's
 * dispatch(), bounded, against a real node:http server on port 0. Each case sends what a real
 * agent (or a proxy in front of one) could send and checks what the reader hands over.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ResponseReader, type RawAnswer } from '../../../../src/registry/consul/response-reader.js'
import { withDeadline } from '../../../support/wait.js'

class TooLargeError extends Error {}

/** The handler of the path the test asks for. */
const routes = new Map<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>()
const server = http.createServer((req, res) => {
  const route = routes.get(req.url ?? '')
  if (route === undefined) {
    res.writeHead(404).end()
    return
  }
  route(req, res)
})
let pool: Pool

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  pool = new Pool(`http://127.0.0.1:${String(port)}`, { connections: 4 })
})

afterAll(async () => {
  await pool.destroy()
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

/** Sends GET `path` through a reader with `maxBytes`; resolves with what `done` got. */
function read(
  path: string,
  maxBytes: number,
  beforeDispatch?: (reader: ResponseReader) => void,
): Promise<{ error: Error | undefined; answer: RawAnswer | undefined; calls: number }> {
  return withDeadline(
    new Promise((resolve) => {
      let calls = 0
      const reader = new ResponseReader(
        maxBytes,
        (size) => new TooLargeError(size),
        (error, answer) => {
          calls++
          // A second call would be a bug: report after a turn so it is seen.
          setImmediate(() => {
            resolve({ error, answer, calls })
          })
        },
      )
      beforeDispatch?.(reader)
      pool.dispatch({ method: 'GET', path }, reader)
    }),
    5_000,
    `reading ${path}`,
  )
}

describe('ResponseReader', () => {
  it('hands over status, lower-case headers and the whole text, across chunks', async () => {
    // "é" split across two writes: the text is decoded once, from all the bytes.
    const bytes = Buffer.from('[{"Name":"café"}]', 'utf8')
    const cut = bytes.indexOf(0xc3) + 1
    routes.set('/chunks', (_req, res) => {
      res.writeHead(200, { 'X-Consul-Index': '42' })
      res.write(bytes.subarray(0, cut))
      setImmediate(() => res.end(bytes.subarray(cut)))
    })
    const { error, answer, calls } = await read('/chunks', 1024)
    expect(error).toBeUndefined()
    expect(calls).toBe(1)
    expect(answer?.status).toBe(200)
    expect(answer?.headers['x-consul-index']).toBe('42')
    expect(answer?.text).toBe('[{"Name":"café"}]')
  })

  it('hands over an empty body as ""', async () => {
    routes.set('/empty', (_req, res) => res.writeHead(204).end())
    const { answer } = await read('/empty', 1024)
    expect(answer).toMatchObject({ status: 204, text: '' })
  })

  it('refuses a declared content-length over the limit before reading the body', async () => {
    let closed!: Promise<void>
    routes.set('/declared', (_req, res) => {
      closed = new Promise((resolve) => res.on('close', resolve))
      res.writeHead(200, { 'Content-Length': '2000' })
      res.write('x'.repeat(100))
    })
    const { error, answer } = await read('/declared', 1000)
    expect(answer).toBeUndefined()
    expect(error).toBeInstanceOf(TooLargeError)
    expect(error?.message).toBe('2000 bytes')
    // Giving up closes the connection: the server sees its response end early.
    await withDeadline(closed, 5_000, 'the server to see the connection close')
  })

  it('aborts a chunked body as soon as it passes the limit', async () => {
    let written = 0
    routes.set('/growing', (_req, res) => {
      res.writeHead(200)
      const more = (): void => {
        if (res.destroyed || written > 1_000_000) return
        written += 600
        res.write('y'.repeat(600), () => setImmediate(more))
      }
      more()
    })
    const { error } = await read('/growing', 1000)
    expect(error).toBeInstanceOf(TooLargeError)
    expect(error?.message).toBe('more than 1000 bytes')
    // Far from the million bytes the server would have sent.
    expect(written).toBeLessThan(100_000)
  })

  it('reports an abort before undici started the request, once', async () => {
    routes.set('/never', (_req, res) => res.writeHead(200).end('[]'))
    const reason = new Error('caller gave up')
    const { error, answer, calls } = await read('/never', 1024, (reader) => {
      reader.abort(reason)
    })
    expect(error).toBe(reason)
    expect(answer).toBeUndefined()
    expect(calls).toBe(1)
  })

  it('reports an abort of a request in flight with its reason', async () => {
    const reason = new Error('watch closed')
    const { error } = await withDeadline(
      new Promise<{ error: Error | undefined }>((resolve) => {
        const reader = new ResponseReader(
          1024,
          (size) => new TooLargeError(size),
          (e) => {
            resolve({ error: e })
          },
        )
        // The request is in flight once the server has it; like a long poll, it gets no answer.
        routes.set('/parked', () => {
          reader.abort(reason)
        })
        pool.dispatch({ method: 'GET', path: '/parked' }, reader)
      }),
      5_000,
      'the abort to be reported',
    )
    expect(error).toBe(reason)
  })

  it('reports a transport failure', async () => {
    routes.set('/reset', (req) => req.socket.destroy())
    const { error, answer } = await read('/reset', 1024)
    expect(answer).toBeUndefined()
    expect(error).toBeInstanceOf(Error)
    expect(error).not.toBeInstanceOf(TooLargeError)
  })
})
