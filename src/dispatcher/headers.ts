/**
 * Adding the logical `Host` to a request's headers in the three shapes undici accepts (flat
 * array, iterable of pairs, plain object; `lib/core/request.js`), unless the caller set one in
 * any case: a second host header makes undici throw "duplicate host header". Same rule as
 * undici's dns interceptor (`lib/interceptor/dns.js` withHostHeader). The caller's object is
 * never mutated.
 */
import type { Dispatcher } from 'undici'

type Headers = Dispatcher.DispatchOptions['headers']

function isHost(name: unknown): boolean {
  if (typeof name === 'string') return name.length === 4 && name.toLowerCase() === 'host'
  if (name instanceof Uint8Array)
    return name.length === 4 && Buffer.from(name).toString('latin1').toLowerCase() === 'host'
  return false
}

/** `headers` with `host: value` added when no host header is present. */
export function withHost(headers: Headers, value: string): NonNullable<Headers> {
  if (headers === undefined || headers === null) return { host: value }
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const pair of headers as unknown as unknown[][])
        if (isHost(pair[0])) return headers as NonNullable<Headers>
      return [
        ...(headers as unknown as [string, string][]),
        ['host', value],
      ] as unknown as NonNullable<Headers>
    }
    for (let i = 0; i < headers.length; i += 2) if (isHost(headers[i])) return headers
    return [...headers, 'host', value]
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    const flat: string[] = []
    let found = false
    for (const pair of headers as Iterable<[string, string | string[]]>) {
      const [k, v] = pair
      if (isHost(k)) found = true
      if (Array.isArray(v)) for (const x of v) flat.push(k, x)
      else flat.push(k, v)
    }
    if (!found) flat.push('host', value)
    return flat
  }
  for (const k in headers as Record<string, unknown>)
    if (k.length === 4 && k.toLowerCase() === 'host') return headers
  return Object.assign({ host: value }, headers)
}
