/**
 * A tiny health endpoint that really answers: `GET <path>` → 200 `{"status":"UP"}`, or 503
 * `{"status":"DOWN"}` while the service is draining or its own check fails. Point a Consul HTTP
 * check at it (`check: { http: health.url }`).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseHealthServerOptions } from './options.js'

/** Options of {@link startHealthServer}. */
export interface HealthServerOptions {
  /** Port to listen on; 0 picks a free one. @defaultValue 0 */
  readonly port?: number
  /** Interface to bind. @defaultValue '127.0.0.1' */
  readonly host?: string
  /** Path that answers. @defaultValue '/health' */
  readonly path?: string
  /**
   * Extra liveness check run per request (e.g. "can I reach my database?"); false or a throw
   * answers DOWN. Keep it fast: Consul times checks out (default 10 s).
   */
  readonly check?: () => boolean | Promise<boolean>
}

/** A running health endpoint. */
export interface HealthServer extends AsyncDisposable {
  /** Full URL of the health path, e.g. `http://127.0.0.1:41234/health`. */
  readonly url: string
  readonly port: number
  /** Current reported status (before the per-request check). */
  readonly status: 'UP' | 'DOWN'
  /** Set DOWN when draining, so the registry stops routing here before deregistration. */
  setStatus(status: 'UP' | 'DOWN'): void
  close(): Promise<void>
}

/** Starts the health endpoint. */
export async function startHealthServer(options: HealthServerOptions = {}): Promise<HealthServer> {
  const { port, host, path, check } = parseHealthServerOptions(options)
  let status: 'UP' | 'DOWN' = 'UP'

  const server: Server = createServer((req, res) => {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    if ((q === -1 ? url : url.slice(0, q)) !== path) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    const answer = (up: boolean): void => {
      const body = up ? '{"status":"UP"}' : '{"status":"DOWN"}'
      res.writeHead(up ? 200 : 503, {
        'content-type': 'application/json',
        'cache-control': 'no-store',
      })
      res.end(req.method === 'HEAD' ? undefined : body)
    }
    if (status === 'DOWN' || check === undefined) {
      answer(status === 'UP')
      return
    }
    Promise.resolve()
      .then(check)
      .then(
        (ok) => {
          answer(ok)
        },
        () => {
          answer(false)
        },
      )
  })
  // A health server must never keep the process alive on its own, nor hold idle sockets.
  server.keepAliveTimeout = 1_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.unref()
  const bound = (server.address() as AddressInfo).port
  const urlHost = host.includes(':') ? `[${host}]` : host
  let closing: Promise<void> | undefined
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => {
        resolve()
      })
      server.closeAllConnections()
    }))
  return {
    url: `http://${urlHost}:${bound}${path}`,
    port: bound,
    get status() {
      return status
    },
    setStatus(s) {
      status = s
    },
    close,
    [Symbol.asyncDispose]: close,
  }
}
