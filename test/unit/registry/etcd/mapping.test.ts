import { describe, expect, it } from 'vitest'
import {
  decodeEntry,
  defaultEtcdCodec,
  encodeRegistration,
  parseHostPort,
  type EtcdCodec,
  type EtcdEntry,
} from '../../../../src/registry/etcd/mapping.js'
import { prefixEnd } from '../../../../src/registry/etcd/client.js'

function entry(value: string | Uint8Array, keySuffix = 'k1', service = 'svc'): EtcdEntry {
  return {
    key: `/services/${service}/${keySuffix}`,
    service,
    keySuffix,
    value: typeof value === 'string' ? Buffer.from(value) : value,
  }
}

function decode(value: string | Uint8Array, keySuffix?: string) {
  return decodeEntry(defaultEtcdCodec, entry(value, keySuffix))
}

describe('default etcd codec', () => {
  it('reads the registrar JSON and round-trips encodeRegistration', () => {
    const value = encodeRegistration({
      id: 'a-1',
      name: 'svc',
      address: '10.0.0.1',
      port: 80,
      tags: ['x'],
      meta: { z: '1' },
      weight: 4,
    })
    const r = decode(value, 'a-1')
    expect(r).toMatchObject({
      kind: 'instance',
      instance: {
        id: 'a-1',
        key: '/services/svc/a-1',
        service: 'svc',
        host: '10.0.0.1',
        port: 80,
        tags: ['x'],
        meta: { z: '1' },
        weight: 4,
        status: 'passing',
      },
    })
    expect(Object.isFrozen(r.kind === 'instance' ? r.instance : null)).toBe(true)
  })

  it('takes the key suffix as id when the JSON has none', () => {
    expect(decode('{"address":"h","port":1}', 'suffix')).toMatchObject({
      kind: 'instance',
      instance: { id: 'suffix' },
    })
  })

  it.each([
    ['192.168.1.100:8080', '192.168.1.100', 8080],
    ['  host.example:1 \n', 'host.example', 1],
    ['[::1]:9000', '::1', 9000],
    ['http://10.0.0.1:8000/path?x=1', '10.0.0.1', 8000],
  ])('reads plain %j', (value, host, port) => {
    expect(decode(value, 'id')).toMatchObject({
      kind: 'instance',
      instance: { id: 'id', host, port },
    })
  })

  it('reads Go etcd naming values, with or without Op, and their metadata', () => {
    expect(decode('{"Op":0,"Addr":"1.2.3.4:5","Metadata":null}', '1.2.3.4:5')).toMatchObject({
      kind: 'instance',
      instance: { id: '1.2.3.4:5', host: '1.2.3.4', port: 5, meta: {} },
    })
    expect(decode('{"Addr":"1.2.3.4:5","Metadata":"blob"}')).toMatchObject({
      instance: { meta: { metadata: 'blob' } },
    })
    expect(decode('{"Addr":"1.2.3.4:5","Metadata":{"w":2,"z":"a"}}')).toMatchObject({
      instance: { meta: { w: '2', z: 'a' } },
    })
  })

  it('chooses the first http:// endpoint of a Kratos instance', () => {
    const v = JSON.stringify({
      id: 'k',
      name: 'svc',
      version: 'v1',
      metadata: null,
      endpoints: ['grpc://1.1.1.1:9000', 'http://2.2.2.2:8000?isSecure=false', 'http://3.3.3.3:1'],
    })
    expect(decode(v)).toMatchObject({
      kind: 'instance',
      instance: { id: 'k', host: '2.2.2.2', port: 8000, meta: { version: 'v1' } },
    })
  })

  it('reads a go-micro service with one node', () => {
    const v = JSON.stringify({
      name: 'svc',
      version: 'latest',
      nodes: [{ id: 'svc-1', address: '4.4.4.4:45123', metadata: { a: 'b' } }],
    })
    expect(decode(v)).toMatchObject({
      kind: 'instance',
      instance: { id: 'svc-1', host: '4.4.4.4', port: 45123, meta: { a: 'b', version: 'latest' } },
    })
  })

  it.each([
    ['', /empty/],
    ['just-a-host', /no port/],
    ['host:99999', /port 99999/],
    ['host:0', /port 0/],
    ['::1:80', /unbracketed IPv6/],
    ['https://h:1', /not http/],
    ['{"address":', /not valid JSON/],
    ['[1,2]', /no port|not/],
    ['{"address":"h"}', /"port"/],
    ['{"address":"h","port":1,"weight":0}', /weight/],
    ['{"address":"h","port":1,"weight":1.5}', /weight/],
    ['{"address":"h","port":1,"tags":"x"}', /tags/],
    ['{"address":"h","port":1,"meta":{"a":1}}', /meta/],
    ['{"address":"a b","port":1}', /not a host/],
    ['{"name":"other","address":"h","port":1}', /names service "other"/],
    ['{"Addr":7}', /Addr/],
    ['{"endpoints":["grpc://h:1"]}', /no http:\/\/ endpoint/],
    ['{"nodes":[]}', /exactly one node/],
  ])('reports %j as malformed', (value, reason) => {
    const r = decode(value)
    expect(r.kind).toBe('malformed')
    expect(r.kind === 'malformed' ? r.reason : '').toMatch(reason)
  })

  it('reports non-UTF-8 bytes as malformed', () => {
    expect(decode(new Uint8Array([0xff, 0xfe, 0x3a]))).toMatchObject({
      kind: 'malformed',
      reason: expect.stringMatching(/UTF-8/),
    })
  })

  it('reports a value whose only bad byte sits inside a JSON string as malformed', () => {
    const value = Buffer.concat([
      Buffer.from('{"address":"h","port":1,"meta":{"zone":"a'),
      Buffer.from([0xc3]), // a lead byte with no continuation
      Buffer.from('"}}'),
    ])
    expect(decode(value)).toMatchObject({
      kind: 'malformed',
      reason: expect.stringMatching(/UTF-8/),
    })
  })

  it('reads valid UTF-8, a U+FFFD the value really holds included', () => {
    const r = decode(Buffer.from('{"address":"h","port":1,"meta":{"zone":"東京 \uFFFD"}}', 'utf8'))
    expect(r.kind).toBe('instance')
    expect(r.kind === 'instance' ? r.instance.meta.zone : '').toBe('東京 \uFFFD')
  })
})

describe('custom codecs', () => {
  it('may ignore entries, throw for malformed ones, and are validated like the default', () => {
    const codec: EtcdCodec = {
      name: 'csv',
      decode(e) {
        const text = Buffer.from(e.value).toString()
        if (text === 'skip') return undefined
        if (text === 'boom') throw new Error('boom!')
        const [host = '', port = ''] = text.split(',')
        return { id: e.keySuffix, host, port: Number(port) }
      },
    }
    expect(decodeEntry(codec, entry('h,80'))).toMatchObject({
      kind: 'instance',
      instance: { host: 'h', port: 80, key: '/services/svc/k1' },
    })
    expect(decodeEntry(codec, entry('skip'))).toEqual({ kind: 'ignored' })
    expect(decodeEntry(codec, entry('boom'))).toEqual({ kind: 'malformed', reason: 'boom!' })
    expect(decodeEntry(codec, entry('h,0'))).toMatchObject({ kind: 'malformed' })
  })
})

describe('helpers', () => {
  it('parseHostPort keeps IPv6 unbracketed in host', () => {
    expect(parseHostPort('[fe80::1]:443')).toEqual({ host: 'fe80::1', port: 443 })
  })

  it('prefixEnd is the first key after every key with the prefix', () => {
    expect(prefixEnd(Buffer.from('/services/a/')).toString()).toBe('/services/a0')
    expect([...prefixEnd(Buffer.from([0x61, 0xff]))]).toEqual([0x62])
    expect([...prefixEnd(Buffer.from([0xff]))]).toEqual([0])
  })
})

describe('limits on etcd values', () => {
  it('refuses a value over maxValueBytes without decoding it', () => {
    const r = decodeEntry(defaultEtcdCodec, entry('x'.repeat(1_000_000)), 256 * 1024)
    expect(r).toMatchObject({ kind: 'malformed' })
    expect(r.kind === 'malformed' ? r.reason : '').toMatch(
      /1000000 bytes, over limits.maxValueBytes/,
    )
  })

  it('quotes at most a short prefix of a bad value: a 1 MB value makes a one-line reason', () => {
    const r = decodeEntry(defaultEtcdCodec, entry('x'.repeat(1_000_000)))
    const reason = r.kind === 'malformed' ? r.reason : ''
    expect(reason).toMatch(/… \(1000000 chars\)/)
    expect(reason.length).toBeLessThan(300)
  })

  it('cuts the message of a custom codec that quotes the whole value', () => {
    const codec: EtcdCodec = {
      name: 'loud',
      decode(e) {
        throw new Error(`bad value ${Buffer.from(e.value).toString()}`)
      },
    }
    const r = decodeEntry(codec, entry('y'.repeat(100_000)))
    expect(r.kind === 'malformed' ? r.reason.length : 0).toBeLessThan(400)
  })

  it.each([
    ['a host of 1,000,000 characters', `${'h'.repeat(1_000_000)}:80`, /longer than a DNS name/],
    ['U+FFFD from a raw 0xFF byte', 'ho\uFFFDst:80', /replacement/],
    ['a control character', 'ho\u0007st:80', /control/],
    ['a label over 63 characters', `${'a'.repeat(64)}.example:80`, /not a host name/],
  ])('refuses %s as an address', (_what, value, reason) => {
    const r = decodeEntry(defaultEtcdCodec, entry(value))
    expect(r.kind).toBe('malformed')
    const text = r.kind === 'malformed' ? r.reason : ''
    expect(text).toMatch(reason)
    expect(text.length).toBeLessThan(300)
  })

  it('accepts IP literals and DNS names up to 253 characters', () => {
    const name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`
    expect(name).toHaveLength(253)
    for (const ok of [`${name}:80`, '[fe80::1]:80', '10.0.0.1:80', 'my_host.internal.:80'])
      expect(decodeEntry(defaultEtcdCodec, entry(ok)).kind, ok).toBe('instance')
  })
})
