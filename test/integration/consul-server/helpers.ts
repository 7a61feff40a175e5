/**
 * Small HTTP helpers for the Consul test server's own tests: real sockets through undici.
 */
import { Agent, request } from 'undici'
import type { ConsulTestServer } from '../../support/consul-server/index.js'

export interface Reply {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly text: string
  readonly index: number | undefined
  /** Parsed body; the type argument is a cast for the test's convenience. */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  json<T = unknown>(): T
}

/** One dispatcher per test file; blocking queries each hold their own connection, as in real clients. */
export const dispatcher = new Agent({ connections: 50, pipelining: 0 })

export async function call(
  server: ConsulTestServer | string,
  path: string,
  init: {
    method?: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'OPTIONS'
    body?: unknown
    headers?: Record<string, string>
    signal?: AbortSignal
  } = {},
): Promise<Reply> {
  const base = typeof server === 'string' ? server : server.url
  const res = await request(`${base}${path}`, {
    method: init.method ?? 'GET',
    dispatcher,
    headers: init.headers ?? {},
    ...(init.body !== undefined
      ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) }
      : {}),
    ...(init.signal !== undefined ? { signal: init.signal } : {}),
    headersTimeout: 0,
    bodyTimeout: 0,
  })
  const text = await res.body.text()
  const idx = res.headers['x-consul-index']
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    index: typeof idx === 'string' ? Number(idx) : undefined,
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
    json: <T>() => JSON.parse(text) as T,
  }
}

export const put = (
  server: ConsulTestServer,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
): Promise<Reply> =>
  call(server, path, {
    method: 'PUT',
    ...(body !== undefined ? { body } : {}),
    ...(headers !== undefined ? { headers } : {}),
  })

export interface HealthEntry {
  Node: { Node: string; Address: string; Meta: Record<string, string> }
  Service: {
    ID: string
    Service: string
    Tags: string[]
    Address: string
    Port: number
    Meta: Record<string, string>
    Weights: { Passing: number; Warning: number }
  }
  Checks: { CheckID: string; Status: string; Output: string; ServiceID: string; Type: string }[]
}

/**
 * Follows `/v1/health/service/<name>` with blocking queries until `predicate` holds: an event-driven
 * wait (each change wakes the query), bounded by `timeoutMs`.
 */
export async function waitForHealth(
  server: ConsulTestServer,
  service: string,
  predicate: (entries: HealthEntry[]) => boolean,
  timeoutMs = 5_000,
): Promise<HealthEntry[]> {
  const deadline = Date.now() + timeoutMs
  let index = 0
  for (;;) {
    const left = deadline - Date.now()
    if (left <= 0)
      throw new Error(`Timed out after ${timeoutMs} ms waiting for health of ${service}`)
    const r = await call(
      server,
      `/v1/health/service/${service}?index=${index}&wait=${Math.max(1, Math.ceil(left))}ms`,
    )
    if (r.status !== 200) throw new Error(`health query failed: ${r.status} ${r.text}`)
    const entries = r.json<HealthEntry[]>()
    if (predicate(entries)) return entries
    index = r.index ?? 0
  }
}
