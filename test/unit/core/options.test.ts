import { describe, expect, expectTypeOf, it } from 'vitest'
import { parseOptions } from '../../../src/core/options/check.js'
import { backoff } from '../../../src/core/options/common.js'
import { editDistance, nearMatch } from '../../../src/core/options/near-match.js'
import { maskCredentials, renderValue } from '../../../src/core/options/redact.js'
import {
  duration,
  integer,
  object,
  optionPaths,
  string,
  type SchemaFor,
} from '../../../src/core/options/schema.js'
import { invalidOption } from '../../support/errors.js'

describe('nearMatch', () => {
  it.each([
    ['resolveTimeout', 'resolveTimeoutMs'],
    ['requestTimeout', 'requestTimeoutMs'],
    ['conections', 'connections'],
    ['datacentre', 'datacenter'],
    ['TOKEN', 'token'],
    ['ttl', 'ttlMs'],
  ])('%s → %s', (typo, known) => {
    expect(nearMatch(typo, ['token', 'ttlMs', 'connections', known, 'datacenter'])).toBe(known)
  })

  it('suggests nothing for a different word', () => {
    expect(nearMatch('maxAttempts', ['connectRetries', 'sentRetries', 'statusCodes'])).toBe(
      undefined,
    )
    expect(nearMatch('a', ['ab', 'cd'])).toBe('ab')
    expect(nearMatch('xy', ['ab'])).toBe(undefined)
  })

  it('counts a transposition as one edit', () => {
    expect(editDistance('datacentre', 'datacenter')).toBe(1)
    expect(editDistance('', 'abc')).toBe(3)
  })
})

describe('renderValue', () => {
  it('shows a secret by shape only, never as something that looks like a value', () => {
    expect(renderValue('root:hunter2', true)).toBe('<redacted string, 12 chars>')
    expect(renderValue(Buffer.from('key'), true)).toBe('<redacted Buffer, 3 bytes>')
    expect(renderValue(42, true)).toBe('<redacted number>')
    expect(renderValue(undefined, true)).toBe('undefined')
  })

  it('masks URL passwords in any string, keeping the rest', () => {
    expect(renderValue('http://root:hunter2@host:2379')).toBe('"http://root:***@host:2379"')
    expect(maskCredentials('root:hunter2@host:2379')).toBe('root:***@host:2379')
    expect(maskCredentials('https://tok3n@consul:8501')).toBe('https://***@consul:8501')
    expect(maskCredentials('a:1,http://u:p@b:2')).toBe('a:1,http://u:***@b:2')
    expect(maskCredentials('http://host:2379/path')).toBe('http://host:2379/path')
  })

  it('cuts a long value to a short prefix and says how long it was', () => {
    const text = renderValue('x'.repeat(1_000_000))
    expect(text.length).toBeLessThan(80)
    expect(text).toContain('(1000000 chars)')
  })
})

describe('parseOptions', () => {
  interface Example {
    readonly name?: string
    readonly retries?: number
    readonly password?: string
    readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number }
  }
  const schema = {
    name: string().default('x'),
    retries: integer(0, 5).default(2),
    password: string().secret(),
    backoff: backoff({ initialMs: 10, maxMs: 100 }),
  } satisfies SchemaFor<Example>
  const spec = object(schema, { renamed: { retry: 'retries' } }).default({})
  const parse = (input: unknown) => parseOptions(spec, input, { label: 'example()' })

  it('applies defaults and returns a frozen, typed result', () => {
    const o = parse({ retries: 3 })
    expect(o).toEqual({
      name: 'x',
      retries: 3,
      password: undefined,
      backoff: { initialMs: 10, maxMs: 100 },
    })
    expect(Object.isFrozen(o)).toBe(true)
    expect(Object.isFrozen(o.backoff)).toBe(true)
    expectTypeOf(o.retries).toEqualTypeOf<number>()
    expectTypeOf(o.password).toEqualTypeOf<string | undefined>()
    // Parsing a parsed result again is free: the same object comes back.
    expect(parse(o)).toBe(o)
  })

  it('names the full path, the value and the fix', () => {
    const e = invalidOption(() => parse({ backoff: { initialMs: 50, maxMs: 5 } }))
    expect(e.option).toBe('backoff.maxMs')
    expect(e.message).toBe(
      'Invalid option "backoff.maxMs": got 5. Pass at least backoff.initialMs (50).',
    )
  })

  it('refuses unknown keys with a hint, old spellings with the new one', () => {
    expect(invalidOption(() => parse({ retires: 1 })).message).toMatch(
      /example\(\) has no option "retires"; did you mean "retries"\?/,
    )
    expect(invalidOption(() => parse({ backoff: { initial: 1 } })).message).toMatch(
      /"backoff" has no option "initial"; did you mean "backoff\.initialMs"\?/,
    )
    expect(invalidOption(() => parse({ retry: 1 })).message).toMatch(
      /example\(\) calls this option "retries" now/,
    )
    expect(invalidOption(() => parse({ zzz: 'text' })).message).toMatch(
      /got <redacted string, 4 chars>.*its options are: name, retries, password, backoff/,
    )
  })

  it('redacts a secret and a misspelt secret', () => {
    expect(invalidOption(() => parse({ password: '' })).message).toContain(
      '<redacted string, 0 chars>',
    )
    const typo = invalidOption(() => parse({ pasword: 'hunter2' }))
    expect(typo.message).not.toContain('hunter2')
  })

  it('lists every option path, nested ones included', () => {
    expect(optionPaths(schema)).toEqual([
      'name',
      'retries',
      'password',
      'backoff',
      'backoff.initialMs',
      'backoff.maxMs',
    ])
  })

  it('keeps a schema and its interface in step at compile time', () => {
    // @ts-expect-error a field without a schema entry does not compile
    const missing = { a: integer(1, 2) } satisfies SchemaFor<{ a?: number; b?: string }>
    // @ts-expect-error a schema entry without a field does not compile
    const extra = { a: integer(1, 2), c: duration() } satisfies SchemaFor<{ a?: number }>
    expect([missing, extra]).toHaveLength(2)
  })
})
