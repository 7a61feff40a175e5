/**
 * The Range request and answer in wire format, held to the decoder they replace: etcd3's own
 * (its rpc.proto loaded by @grpc/proto-loader with etcd3's settings). Whatever that one encodes,
 * ours reads the same keys, values, leases, revision and `more`; whatever we encode, it reads
 * back as the request we meant.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  decodeRangeResponse,
  encodeRangeRequest,
  RangeWireError,
} from '../../../../src/registry/etcd/range-wire.js'
import { etcd3Range } from '../../../support/etcd3-stack.js'

const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
const bytes = (maxLength: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ maxLength }).map((a) => Buffer.from(a))
// Small, large (lease IDs are often over 2^53) and negative values, and zero (left off the wire).
const int64Text = fc.oneof(int64, fc.integer({ min: 0, max: 1000 }).map(BigInt)).map(String)

const keyValue = fc.record({
  key: bytes(40),
  create_revision: int64Text,
  mod_revision: int64Text,
  version: int64Text,
  value: bytes(300),
  lease: int64Text,
})

const rangeResponse = fc.record({
  header: fc.record({
    cluster_id: uint64.map(String),
    member_id: uint64.map(String),
    revision: int64Text,
    raft_term: uint64.map(String),
  }),
  kvs: fc.array(keyValue, { maxLength: 20 }),
  more: fc.boolean(),
  count: int64Text,
})

/** What a listing reads of etcd3's decoding. */
function etcd3Reads(wire: Buffer): unknown {
  const res = etcd3Range.responseDeserialize(wire)
  return {
    revision: BigInt(res.header.revision),
    more: res.more,
    kvs: res.kvs.map((kv) => ({ key: kv.key, value: kv.value, lease: kv.lease })),
  }
}

function ours(wire: Buffer): unknown {
  const page = decodeRangeResponse(wire)
  return {
    revision: page.revision,
    more: page.more,
    kvs: page.kvs.map((kv) => ({ key: kv.key, value: kv.value, lease: kv.lease })),
  }
}

/** A varint, for hand-built messages. */
function varint(value: bigint): number[] {
  const out: number[] = []
  let v = BigInt.asUintN(64, value)
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  out.push(Number(v))
  return out
}

function field(number: number, wire: number, payload: number[]): number[] {
  return [...varint(BigInt(number) * 8n + BigInt(wire)), ...payload]
}

function lengthDelimited(number: number, payload: number[]): number[] {
  return field(number, 2, [...varint(BigInt(payload.length)), ...payload])
}

describe('decodeRangeResponse', () => {
  it("reads every answer etcd3's decoder reads, the same way", () => {
    fc.assert(
      fc.property(rangeResponse, (res) => {
        const wire = etcd3Range.responseSerialize(res)
        expect(ours(wire)).toEqual(etcd3Reads(wire))
      }),
      { numRuns: 500 },
    )
  })

  it('reads lease IDs over 2^53 and negative ones exactly, as signed decimal text', () => {
    for (const lease of ['7587869323645298691', '9007199254740993', '-1', '0', '1']) {
      const wire = etcd3Range.responseSerialize({
        header: { revision: '5' },
        kvs: [{ key: Buffer.from('k'), value: Buffer.from('v'), lease }],
      })
      expect(decodeRangeResponse(wire).kvs[0]?.lease).toBe(lease)
    }
  })

  it('skips fields it does not know, of every wire type, at the top and inside a key', () => {
    const unknown = [
      ...field(15, 0, varint(2n ** 63n)),
      ...field(16, 1, [1, 2, 3, 4, 5, 6, 7, 8]),
      ...lengthDelimited(17, [9, 9, 9]),
      ...field(18, 5, [1, 2, 3, 4]),
      // The largest field number protobuf allows: its tag needs all 32 bits.
      ...field(2 ** 29 - 1, 0, varint(1n)),
    ]
    const kv = [
      ...unknown,
      ...lengthDelimited(1, [...Buffer.from('/s/a')]),
      ...unknown,
      ...lengthDelimited(5, [...Buffer.from('1.2.3.4:80')]),
      ...field(6, 0, varint(42n)),
    ]
    const wire = Buffer.from([
      ...unknown,
      ...lengthDelimited(1, [...field(3, 0, varint(77n)), ...unknown]),
      ...lengthDelimited(2, kv),
      ...field(3, 0, [1]),
    ])
    expect(ours(wire)).toEqual(etcd3Reads(wire))
    expect(decodeRangeResponse(wire)).toMatchObject({ revision: 77n, more: true })
  })

  it('takes the last value of a field that repeats, as protobuf does', () => {
    const wire = Buffer.from([
      ...lengthDelimited(1, field(3, 0, varint(5n))),
      ...lengthDelimited(1, field(3, 0, varint(9n))),
    ])
    expect(decodeRangeResponse(wire).revision).toBe(9n)
    expect(ours(wire)).toEqual(etcd3Reads(wire))
  })

  it('reads an empty answer as no keys at revision 0', () => {
    expect(decodeRangeResponse(Buffer.alloc(0))).toEqual({ revision: 0n, kvs: [], more: false })
  })

  it('throws a RangeWireError for an answer cut anywhere inside a field, never a partial page', () => {
    const wire = etcd3Range.responseSerialize({
      header: { revision: '12' },
      kvs: [
        { key: Buffer.from('/s/a'), value: Buffer.from('10.0.0.1:80'), lease: '99999999999' },
        { key: Buffer.from('/s/b'), value: Buffer.from('10.0.0.2:80'), lease: '0' },
      ],
      more: true,
    })
    // Offsets at which a field ends are valid shorter messages; every other cut is not.
    const boundaries = new Set<number>()
    for (let cut = 1; cut < wire.length; cut++) {
      try {
        decodeRangeResponse(wire.subarray(0, cut))
        boundaries.add(cut)
      } catch (err) {
        expect(err).toBeInstanceOf(RangeWireError)
      }
    }
    // The header, the first key, the second key: three whole fields before `more`.
    expect(boundaries.size).toBe(3)
  })

  it('throws on a group wire type and on a varint longer than ten bytes', () => {
    expect(() => decodeRangeResponse(Buffer.from(field(2, 3, [])))).toThrow(/wire type 3/)
    const long = Buffer.from([...field(3, 0, []), ...Array<number>(10).fill(0xff), 0x01])
    expect(() => decodeRangeResponse(long)).toThrow(RangeWireError)
    expect(() => decodeRangeResponse(long)).toThrow(/over ten bytes/)
  })

  it('throws when a nested message is longer than its declared length', () => {
    // The header says 2 bytes, but its revision varint needs 3.
    const wire = Buffer.from([...field(1, 2, [2]), ...field(3, 0, [0x80, 0x80, 0x01])])
    expect(() => decodeRangeResponse(wire)).toThrow(RangeWireError)
  })
})

describe('encodeRangeRequest', () => {
  it('writes a request etcd3 reads back as the one we meant', () => {
    fc.assert(
      fc.property(
        bytes(60),
        bytes(60),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.option(fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }), { nil: undefined }),
        (key, rangeEnd, limit, revision) => {
          const req = etcd3Range.requestDeserialize(
            encodeRangeRequest({
              key,
              rangeEnd,
              limit,
              ...(revision === undefined ? {} : { revision }),
            }),
          )
          expect(req.key).toEqual(key)
          expect(req.range_end).toEqual(rangeEnd)
          expect(req.limit).toBe(String(limit))
          expect(req.revision).toBe(String(revision ?? 0n))
        },
      ),
      { numRuns: 300 },
    )
  })
})
