/**
 * How a received value is quoted in an error message: short, and never a secret.
 *
 * - A value marked secret in a schema (a token, a password, a private key) is shown by its
 *   shape only: `<redacted string, 12 chars>`. The angle brackets keep it from reading as a
 *   plausible value of its own.
 * - Any string that holds URL credentials (`http://root:hunter2@host:2379`, `root:pw@host:1`)
 *   keeps its user and loses its password: `http://root:***@host:2379`.
 * - A long string is cut to a short quoted prefix followed by its length, so a 1 MB value never
 *   becomes a 1 MB message.
 */

/** Longest string quoted whole; longer ones show a prefix of {@link PREFIX_CHARS}. */
const MAX_QUOTED_CHARS = 80
const PREFIX_CHARS = 40

/** Renders `value` for an error message; `secret` hides everything but its shape. */
export function renderValue(value: unknown, secret = false): string {
  if (value === undefined || value === null) return String(value)
  if (secret) return redacted(value)
  if (typeof value === 'string') return quote(maskCredentials(value))
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  if (typeof value === 'bigint') return `${String(value)}n`
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol') return 'a symbol'
  if (Buffer.isBuffer(value)) return `a Buffer of ${value.length} bytes`
  if (Array.isArray(value)) return `an array of length ${value.length}`
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`
}

/**
 * Replaces the password of URL-style credentials with `***` (a user alone, which may be a
 * token, becomes `***`). Applied to every quoted string, marked secret or not. Linear in the
 * length of `text` (no backtracking regex: values quoted here can be megabytes).
 */
export function maskCredentials(text: string): string {
  let out = ''
  let from = 0
  // user:password@host without a scheme, at the start (an etcd member written as host:port).
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    from = authorityEnd(text, 0)
    out = maskAuthority(text.slice(0, from), false)
  }
  for (;;) {
    const sep = text.indexOf('://', from)
    if (sep === -1) return out + text.slice(from)
    const start = sep + 3
    const end = authorityEnd(text, start)
    out += text.slice(from, start) + maskAuthority(text.slice(start, end), true)
    from = end
  }
}

/** Index where the authority starting at `start` ends. */
function authorityEnd(text: string, start: number): number {
  for (let i = start; i < text.length; i++) {
    const c = text[i]
    if (c === '/' || c === '?' || c === '#' || c === ',' || c === ' ' || c === '\t' || c === '\n')
      return i
  }
  return text.length
}

/** `user:password@host` → `user:***@host`; with `userOnly`, `token@host` → `***@host`. */
function maskAuthority(authority: string, userOnly: boolean): string {
  const at = authority.lastIndexOf('@')
  if (at === -1) return authority
  const userinfo = authority.slice(0, at)
  const colon = userinfo.indexOf(':')
  if (colon === -1) return userOnly ? `***${authority.slice(at)}` : authority
  return `${userinfo.slice(0, colon)}:***${authority.slice(at)}`
}

function quote(text: string): string {
  if (text.length <= MAX_QUOTED_CHARS) return JSON.stringify(text)
  return `${JSON.stringify(text.slice(0, PREFIX_CHARS))}… (${text.length} chars)`
}

function redacted(value: unknown): string {
  if (typeof value === 'string') return `<redacted string, ${value.length} chars>`
  if (Buffer.isBuffer(value)) return `<redacted Buffer, ${value.length} bytes>`
  if (Array.isArray(value)) return `<redacted array of length ${value.length}>`
  return `<redacted ${typeof value}>`
}
