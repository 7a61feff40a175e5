/** The shared RegistryProvider contract suite, against a real etcd. */
import { etcd } from '../../../src/registry/etcd/provider.js'
import { registryProviderContract } from '../../contract/registry-provider.js'
import { EtcdServer } from '../../support/etcd.js'
import { wayfindValue } from './helpers.js'

registryProviderContract('etcd', async () => {
  const server = await EtcdServer.start()
  const admin = server.client()
  const key = (service: string, id: string): string => `/services/${service}/${id}`
  return {
    provider: () => etcd({ hosts: server.host }),
    put: async (service, id, host, port) => {
      await admin
        .put(key(service, id))
        .value(wayfindValue(id, port, { name: service, address: host }))
    },
    remove: async (service, id) => {
      await admin.delete().key(key(service, id))
    },
    lists: async (service, id) => (await admin.get(key(service, id)).exec()).kvs.length > 0,
    close: () => server.remove(),
  }
})
