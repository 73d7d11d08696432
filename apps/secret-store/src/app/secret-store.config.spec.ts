import { readSecretStoreConfig } from './secret-store.config';

describe('readSecretStoreConfig', () => {
  it('defaults to projected tokens reviewed by the API server', () => {
    expect(readSecretStoreConfig({})).toEqual({
      mode: 'projected',
      audience: 'secret-store',
      verification: 'tokenReview',
    });
  });

  it.each(['local', 'local+review', 'local+watch', 'tokenReview'])('reads VERIFICATION=%s', (verification) => {
    expect(readSecretStoreConfig({ VERIFICATION: verification }).verification).toBe(verification);
  });

  it('reads CACHE_MAX_ENTRIES, 0 included, and leaves the bound to the library when it is unset', () => {
    expect(readSecretStoreConfig({ CACHE_MAX_ENTRIES: '50' }).maxCacheEntries).toBe(50);
    expect(readSecretStoreConfig({ CACHE_MAX_ENTRIES: '0' }).maxCacheEntries).toBe(0);
    expect(readSecretStoreConfig({}).maxCacheEntries).toBeUndefined();
  });

  it.each(['-1', '1.5', 'many', ' 5', '1e3'])('refuses CACHE_MAX_ENTRIES=%j', (value) => {
    expect(() => readSecretStoreConfig({ CACHE_MAX_ENTRIES: value })).toThrow(
      `CACHE_MAX_ENTRIES must be a non-negative integer, not '${value}'`,
    );
  });

  it('refuses an unknown VERIFICATION, and local verification of legacy tokens', () => {
    expect(() => readSecretStoreConfig({ VERIFICATION: 'remote' })).toThrow(/VERIFICATION must be one of/);
    expect(() => readSecretStoreConfig({ VERIFICATION: 'local', AUTH_MODE: 'legacy' })).toThrow(
      /needs AUTH_MODE=projected/,
    );
  });
});
