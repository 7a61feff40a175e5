/**
 * Which service names a registry can hold. Each provider states its rule through
 * `RegistryProvider.checkServiceName`, and the client applies it in `resolve()`, `instances()`,
 * the dispatcher's routing and `register()` alike: a name the registry cannot hold fails at once
 * with `InvalidOptionError`, instead of waiting out a timeout on a query that cannot match (or,
 * on Consul, reaching another endpoint: `..` is a path segment HTTP servers resolve away).
 */
import { InvalidOptionError } from '../errors.js'

/** Why a registry cannot hold `name`, or undefined when it can. */
export type ServiceNameRule = (name: string) => string | undefined

/**
 * What every registry refuses: what `register()` has always refused (`/`, whitespace), plus
 * control characters and U+FFFD (the mark of a name decoded from invalid UTF-8).
 */
export const baseNameRule: ServiceNameRule = (name) => {
  if (name.includes('/')) return 'it contains "/"'
  // eslint-disable-next-line no-control-regex -- control characters are what this looks for
  if (/[\s\u0000-\u001f\u007f-\u009f]/u.test(name))
    return 'it contains whitespace or a control character'
  if (name.includes('\uFFFD')) return 'it contains U+FFFD (a replacement character)'
  return undefined
}

/**
 * Consul accepts almost any service name (it only warns that names other than letters, digits
 * and dashes are not discoverable through its DNS interface), but wayfind reads a service at
 * `/v1/health/service/<name>`: the name is one URL path segment, escaped with
 * encodeURIComponent. `.` and `..` are dot-segments that URL normalisation removes (the request
 * would reach `/v1/health/service/` or `/v1/health/`), and `?` and `#` are refused by the Consul
 * registrar already, so they are refused here as well.
 */
export const consulNameRule: ServiceNameRule = (name) => {
  if (name === '.' || name === '..') return 'it is a "." or ".." path segment'
  if (/[?#]/.test(name)) return 'it contains "?" or "#"'
  return baseNameRule(name)
}

/** etcd keys are `<prefix><name>/<id>`: a name is one key segment, so no "/" (base rule). */
export const etcdNameRule: ServiceNameRule = baseNameRule

/**
 * Throws `InvalidOptionError` (option `service`) unless `name` is a non-empty string that
 * `rule` accepts.
 */
export function assertServiceName(registry: string, name: unknown, rule: ServiceNameRule): void {
  if (typeof name !== 'string' || name === '')
    throw new InvalidOptionError('service', name, 'Pass the service name, e.g. "payments".')
  const problem = rule(name)
  if (problem !== undefined)
    throw new InvalidOptionError(
      'service',
      name,
      `The ${registry} registry cannot hold this service name: ${problem}. Use letters, digits, "-", "_" and "." (DNS-compatible names work everywhere).`,
    )
}
