import { describe, expect, it } from 'vitest'
import { chooseRegistry } from '../../../src/cli/registry-args.js'
import { UsageError } from '../../../src/cli/usage.js'

const consul = 'http://127.0.0.1:8500'

describe('the CLI registry flags', () => {
  it('accept --datacenter, and --dc as its alias', () => {
    expect(chooseRegistry({ consul, datacenter: 'dc2' }, {}).kind).toBe('consul')
    expect(chooseRegistry({ consul, dc: 'dc2' }, {}).kind).toBe('consul')
    expect(chooseRegistry({ consul, dc: 'dc2', datacenter: 'dc2' }, {}).kind).toBe('consul')
  })

  it('refuse --dc and --datacenter naming different datacenters', () => {
    expect(() => chooseRegistry({ consul, dc: 'dc1', datacenter: 'dc2' }, {})).toThrow(
      /--dc is an alias of --datacenter/,
    )
  })

  it('refuse --datacenter and --dc with etcd', () => {
    for (const flags of [{ datacenter: 'dc1' }, { dc: 'dc1' }]) {
      const err = (() => {
        try {
          chooseRegistry({ etcd: '127.0.0.1:2379', ...flags }, {})
        } catch (e) {
          return e
        }
        return undefined
      })()
      expect(err).toBeInstanceOf(UsageError)
      expect((err as Error).message).toMatch(/applies to Consul, not etcd/)
    }
  })
})
