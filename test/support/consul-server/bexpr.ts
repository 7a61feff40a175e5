/**
 * A subset of hashicorp/go-bexpr, the `?filter=` language of Consul's list endpoints
 * (https://developer.hashicorp.com/consul/api-docs/features/filtering).
 *
 * Supported: `==`, `!=`, `in`, `not in`, `contains`, `not contains`, `is empty`, `is not empty`,
 * `matches`, `not matches`, `and`, `or`, `not`, parentheses; values as "double-quoted" or
 * `backtick` strings, numbers, true/false, or bare words; selectors `A.B.C` with map keys either as
 * further segments (`Service.Meta.zone`) or `Service.Meta["x-y"]`. A selector that walks through a
 * list (e.g. `Checks.Status`) matches when any element matches, as go-bexpr does.
 * Selectors are validated against a schema when the expression is compiled: an unknown field is a
 * compile error, which Consul reports as HTTP 500 "Failed to create boolean expression evaluator".
 */

/** Field schema: 'value' leaf, 'map' (any key, string values), 'list' of values, or nested structs. */
export type FieldSchema =
  'value' | 'map' | 'list' | { readonly [field: string]: FieldSchema } | readonly [FieldSchema]

export class BexprError extends Error {
  override name = 'BexprError'
}

type Value = string | number | boolean
type Node =
  | { kind: 'and' | 'or'; left: Node; right: Node }
  | { kind: 'not'; expr: Node }
  | { kind: 'match'; op: MatchOp; selector: string[]; value?: Value }

type MatchOp =
  | '=='
  | '!='
  | 'in'
  | 'not in'
  | 'contains'
  | 'not contains'
  | 'is empty'
  | 'is not empty'
  | 'matches'
  | 'not matches'

type Token =
  | { t: 'word'; v: string }
  | { t: 'string'; v: string }
  | { t: 'number'; v: number }
  | { t: 'op'; v: string }

function tokenize(src: string): Token[] {
  const out: Token[] = []
  let i = 0
  while (i < src.length) {
    const c = src.charAt(i)
    if (/\s/.test(c)) {
      i++
      continue
    }
    if (c === '"') {
      let j = i + 1
      let v = ''
      while (j < src.length && src.charAt(j) !== '"') {
        if (src.charAt(j) === '\\' && j + 1 < src.length) {
          v += src.charAt(j + 1)
          j += 2
          continue
        }
        v += src.charAt(j)
        j++
      }
      if (j >= src.length) throw new BexprError(`1:${i + 1}: unterminated string`)
      out.push({ t: 'string', v })
      i = j + 1
      continue
    }
    if (c === '`') {
      const j = src.indexOf('`', i + 1)
      if (j < 0) throw new BexprError(`1:${i + 1}: unterminated raw string`)
      out.push({ t: 'string', v: src.slice(i + 1, j) })
      i = j + 1
      continue
    }
    const two = src.slice(i, i + 2)
    if (two === '==' || two === '!=') {
      out.push({ t: 'op', v: two })
      i += 2
      continue
    }
    if (c === '(' || c === ')' || c === '.' || c === '[' || c === ']') {
      out.push({ t: 'op', v: c })
      i++
      continue
    }
    const num = /^-?[0-9]+(\.[0-9]+)?(?![A-Za-z_])/.exec(src.slice(i))
    if (num !== null) {
      out.push({ t: 'number', v: Number(num[0]) })
      i += num[0].length
      continue
    }
    // grammar.peg Identifier: [a-zA-Z] [a-zA-Z0-9_/]* (map keys with other characters use ["..."]).
    const word = /^[A-Za-z][A-Za-z0-9_/]*/.exec(src.slice(i))
    if (word !== null) {
      out.push({ t: 'word', v: word[0] })
      i += word[0].length
      continue
    }
    throw new BexprError(`1:${i + 1}: no match found, expected: "(", "not", a selector or a value`)
  }
  return out
}

class Parser {
  #tokens: Token[]
  #pos = 0
  constructor(tokens: Token[]) {
    this.#tokens = tokens
  }

  parse(): Node {
    const n = this.#or()
    if (this.#pos < this.#tokens.length)
      throw new BexprError(`unexpected token at position ${this.#pos + 1}`)
    return n
  }
  #peek(o = 0): Token | undefined {
    return this.#tokens[this.#pos + o]
  }
  // Keywords are lower-case literals in grammar.peg ("and", "or", "not", "in", ...).
  #isWord(v: string, o = 0): boolean {
    const t = this.#peek(o)
    return t?.t === 'word' && t.v === v
  }
  #isOp(v: string): boolean {
    const t = this.#peek()
    return t?.t === 'op' && t.v === v
  }
  #or(): Node {
    let left = this.#and()
    while (this.#isWord('or')) {
      this.#pos++
      left = { kind: 'or', left, right: this.#and() }
    }
    return left
  }
  #and(): Node {
    let left = this.#unary()
    while (this.#isWord('and')) {
      this.#pos++
      left = { kind: 'and', left, right: this.#unary() }
    }
    return left
  }
  #unary(): Node {
    if (this.#isWord('not')) {
      this.#pos++
      return { kind: 'not', expr: this.#unary() }
    }
    if (this.#isOp('(')) {
      this.#pos++
      const n = this.#or()
      if (!this.#isOp(')')) throw new BexprError('expected ")"')
      this.#pos++
      return n
    }
    return this.#match()
  }
  #value(): Value {
    const t = this.#peek()
    if (t === undefined) throw new BexprError('expected a value')
    this.#pos++
    if (t.t === 'string' || t.t === 'number') return t.v
    if (t.t === 'word') {
      if (t.v === 'true') return true
      if (t.v === 'false') return false
      return t.v
    }
    throw new BexprError(`expected a value, got ${JSON.stringify(t.v)}`)
  }
  #selector(): string[] {
    const first = this.#peek()
    if (first?.t !== 'word') throw new BexprError('expected a selector')
    this.#pos++
    const parts = [first.v]
    for (;;) {
      if (this.#isOp('.')) {
        this.#pos++
        const t = this.#peek()
        if (t?.t !== 'word' && t?.t !== 'number')
          throw new BexprError('expected a selector segment after "."')
        this.#pos++
        parts.push(String(t.v))
      } else if (this.#isOp('[')) {
        this.#pos++
        const t = this.#peek()
        if (t?.t !== 'string') throw new BexprError('expected a quoted key in "[...]"')
        this.#pos++
        if (!this.#isOp(']')) throw new BexprError('expected "]"')
        this.#pos++
        parts.push(t.v)
      } else return parts
    }
  }
  #match(): Node {
    // `<value> [not] in <selector>` starts with a value; everything else starts with a selector.
    const t0 = this.#peek()
    const valueFirst =
      t0 !== undefined &&
      (t0.t === 'string' ||
        t0.t === 'number' ||
        (t0.t === 'word' &&
          (this.#isWord('in', 1) || (this.#isWord('not', 1) && this.#isWord('in', 2)))))
    if (valueFirst) {
      const value = this.#value()
      let op: MatchOp = 'in'
      if (this.#isWord('not')) {
        this.#pos++
        op = 'not in'
      }
      if (!this.#isWord('in')) throw new BexprError('expected "in"')
      this.#pos++
      return { kind: 'match', op, selector: this.#selector(), value }
    }
    const selector = this.#selector()
    const t = this.#peek()
    if (t?.t === 'op' && (t.v === '==' || t.v === '!=')) {
      this.#pos++
      return { kind: 'match', op: t.v, selector, value: this.#value() }
    }
    if (this.#isWord('is')) {
      this.#pos++
      let op: MatchOp = 'is empty'
      if (this.#isWord('not')) {
        this.#pos++
        op = 'is not empty'
      }
      if (!this.#isWord('empty')) throw new BexprError('expected "empty"')
      this.#pos++
      return { kind: 'match', op, selector }
    }
    let negate = false
    if (this.#isWord('not')) {
      this.#pos++
      negate = true
    }
    if (this.#isWord('contains')) {
      this.#pos++
      return {
        kind: 'match',
        op: negate ? 'not contains' : 'contains',
        selector,
        value: this.#value(),
      }
    }
    if (this.#isWord('matches')) {
      this.#pos++
      return {
        kind: 'match',
        op: negate ? 'not matches' : 'matches',
        selector,
        value: this.#value(),
      }
    }
    throw new BexprError(`expected an operator after selector "${selector.join('.')}"`)
  }
}

function validate(node: Node, schema: FieldSchema): void {
  switch (node.kind) {
    case 'and':
    case 'or':
      validate(node.left, schema)
      validate(node.right, schema)
      return
    case 'not':
      validate(node.expr, schema)
      return
    case 'match': {
      let s: FieldSchema = schema
      for (const part of node.selector) {
        while (Array.isArray(s)) s = (s as readonly [FieldSchema])[0]
        if (s === 'map') {
          s = 'value'
          continue
        }
        if (s === 'value' || s === 'list')
          throw new BexprError(`Selector "${node.selector.join('.')}" is not valid`)
        const next: FieldSchema | undefined = (s as Record<string, FieldSchema>)[part]
        if (next === undefined)
          throw new BexprError(`Selector "${node.selector.join('.')}" is not valid`)
        s = next
      }
      // Collections (lists, maps) only take membership and emptiness operators.
      const collection = s === 'list' || s === 'map' || Array.isArray(s) || typeof s === 'object'
      if (
        collection &&
        (node.op === '==' || node.op === '!=' || node.op === 'matches' || node.op === 'not matches')
      ) {
        throw new BexprError(
          `Invalid match operator "${node.op}" for selector "${node.selector.join('.')}"`,
        )
      }
      return
    }
  }
}

/** A compiled filter. */
export interface Filter {
  matches(value: unknown): boolean
}

/** Compiles `expression`; throws {@link BexprError} on a syntax error or an unknown selector. */
export function compileFilter(expression: string, schema: FieldSchema): Filter {
  const node = new Parser(tokenize(expression)).parse()
  validate(node, schema)
  return { matches: (v) => evaluate(node, v) }
}

/** Every value reached by `path`; walking through a list fans out (any-element semantics). */
function resolve(root: unknown, path: readonly string[]): unknown[] {
  let current: unknown[] = [root]
  for (const part of path) {
    const next: unknown[] = []
    for (const c of current) {
      const items = Array.isArray(c) ? (c as unknown[]) : [c]
      for (const item of items) {
        if (item !== null && typeof item === 'object' && part in item)
          next.push((item as Record<string, unknown>)[part])
      }
    }
    current = next
  }
  return current
}

function equal(field: unknown, value: Value): boolean {
  if (typeof field === 'number') return field === Number(value)
  if (typeof field === 'boolean') return field === (value === true || value === 'true')
  if (typeof field === 'string') return field === String(value)
  return false
}

function evaluate(node: Node, root: unknown): boolean {
  switch (node.kind) {
    case 'and':
      return evaluate(node.left, root) && evaluate(node.right, root)
    case 'or':
      return evaluate(node.left, root) || evaluate(node.right, root)
    case 'not':
      return !evaluate(node.expr, root)
    case 'match': {
      const fields = resolve(root, node.selector)
      const value = node.value ?? ''
      const any = (pred: (f: unknown) => boolean): boolean => fields.some(pred)
      switch (node.op) {
        case '==':
          return any((f) => equal(f, value))
        case '!=':
          return !any((f) => equal(f, value))
        case 'in':
        case 'contains':
          return any((f) => contains(f, value))
        case 'not in':
        case 'not contains':
          return !any((f) => contains(f, value))
        case 'is empty':
          return fields.length === 0 || fields.every(isEmpty)
        case 'is not empty':
          return fields.some((f) => !isEmpty(f))
        case 'matches':
          return any((f) => typeof f === 'string' && new RegExp(String(value)).test(f))
        case 'not matches':
          return !any((f) => typeof f === 'string' && new RegExp(String(value)).test(f))
      }
    }
  }
}

function contains(field: unknown, value: Value): boolean {
  if (Array.isArray(field)) return field.some((e) => equal(e, value))
  if (typeof field === 'string') return field.includes(String(value))
  if (field !== null && typeof field === 'object') return Object.hasOwn(field, String(value))
  return false
}

function isEmpty(field: unknown): boolean {
  if (field === undefined || field === null) return true
  if (Array.isArray(field)) return field.length === 0
  if (typeof field === 'string') return field === ''
  if (typeof field === 'object') return Object.keys(field).length === 0
  return false
}
