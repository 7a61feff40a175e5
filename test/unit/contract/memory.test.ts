import { memoryRegistry } from '../../../src/registry/memory.js'
import { registryProviderContract } from '../../contract/registry-provider.js'

registryProviderContract('memory', () => {
  const reg = memoryRegistry()
  return Promise.resolve({
    provider: () => reg.client(),
    put: (service, id, host, port) => {
      reg.put(service, { id, host, port })
      return Promise.resolve()
    },
    remove: (service, id) => {
      reg.remove(service, id)
      return Promise.resolve()
    },
    lists: (service, id) => Promise.resolve(reg.list(service).some((i) => i.id === id)),
    close: () => reg.close(),
  })
})
