/**
 * `wf.healthHandler()`: the health endpoint on the application's own server. It answers UP
 * (200) while the client is open and not draining, and DOWN (503) from the moment a drain
 * starts, with the state of each registration in the body:
 * `{"status":"UP","registrations":[{"service":"orders","id":"orders-1","state":"registered"}]}`.
 *
 * One function fits node:http, express and the raw request of fastify or node:http2's
 * compatibility API: it only uses `req.url`, `req.method`, `res.writeHead` and `res.end`.
 */
import { parseHealthHandlerOptions } from './options.js'
import type { RegistrationState } from './contract.js'

/** What the health endpoint reports. */
export interface HealthReport {
  readonly status: 'UP' | 'DOWN'
  /** True once a drain started (a handled signal, `drain()` or `wf.close()`). */
  readonly draining: boolean
  readonly registrations: readonly {
    readonly service: string
    readonly id: string
    readonly state: RegistrationState
  }[]
}

/** Options of `wf.healthHandler()`. */
export interface HealthHandlerOptions {
  /**
   * Path that answers; other paths go to `next()` when given (express), else 404. `null`
   * answers on every path (when the framework routes: `app.get('/health', handler)`).
   * @defaultValue '/health'
   */
  readonly path?: string | null
  /** Extra check per request (e.g. "can I reach my database?"); false or a throw answers DOWN. */
  readonly check?: () => boolean | Promise<boolean>
}

/** The minimal request a health handler reads. */
export interface HealthRequest {
  readonly url?: string | undefined
  readonly method?: string | undefined
}

/** The minimal response a health handler writes. */
export interface HealthResponse {
  writeHead(status: number, headers: Record<string, string>): unknown
  end(body?: string): unknown
}

/** `(req, res, next?) => void`, for node:http, express, or fastify's `req.raw`/`reply.raw`. */
export type HealthHandler = (
  req: HealthRequest,
  res: HealthResponse,
  next?: (err?: unknown) => void,
) => void

/** Builds a handler answering with `report()`. */
export function createHealthHandler(
  report: () => HealthReport,
  options?: HealthHandlerOptions,
): HealthHandler {
  const { path, check } = parseHealthHandlerOptions(options)

  return (req, res, next) => {
    if (path !== null) {
      const url = req.url ?? '/'
      const q = url.indexOf('?')
      if ((q === -1 ? url : url.slice(0, q)) !== path) {
        if (next !== undefined) {
          next()
          return
        }
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end('{"error":"not found"}')
        return
      }
    }
    const answer = (r: HealthReport): void => {
      res.writeHead(r.status === 'UP' ? 200 : 503, {
        'content-type': 'application/json',
        'cache-control': 'no-store',
      })
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify(r))
    }
    const now = report()
    if (now.status === 'DOWN' || check === undefined) {
      answer(now)
      return
    }
    void Promise.resolve()
      .then(check)
      .then(
        (ok) => ok,
        () => false,
      )
      .then((ok) => {
        answer(ok ? report() : { ...report(), status: 'DOWN' })
      })
  }
}
