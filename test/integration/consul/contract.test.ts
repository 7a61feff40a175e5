/** The shared RegistryProvider contract suite, against the Consul test server. */
import { consul } from '../../../src/registry/consul/provider.js'
import { registryProviderContract } from '../../contract/registry-provider.js'
import { startConsulServer } from '../../support/consul-server/index.js'

registryProviderContract('consul', async () => {
  const server = await startConsulServer()
  // Consul service ids are unique per node, not per service: each service written from the
  // outside gets its own catalog node, as separate hosts would.
  const node = (service: string): string => `node-${service}`
  return {
    provider: () => consul({ url: server.url }),
    put: (service, id, host, port) => {
      server.addNode(node(service), { address: host })
      server.registerService({ node: node(service), name: service, id, address: host, port })
      return Promise.resolve()
    },
    remove: (service, id) => {
      server.removeService(node(service), id)
      return Promise.resolve()
    },
    lists: async (service, id) => {
      const res = await fetch(`${server.url}/v1/catalog/service/${encodeURIComponent(service)}`)
      if (!res.ok) throw new Error(`catalog read: HTTP ${res.status}`)
      const entries = (await res.json()) as { ServiceID: string }[]
      return entries.some((e) => e.ServiceID === id)
    },
    close: () => server.close(),
  }
})
