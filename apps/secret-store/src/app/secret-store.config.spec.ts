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

  it('reads CACHE_TTL_SECONDS as milliseconds, 0 included, and leaves the TTL to the library when it is unset', () => {
    expect(readSecretStoreConfig({ CACHE_TTL_SECONDS: '600' }).cacheTtlMs).toBe(600_000);
    expect(readSecretStoreConfig({ CACHE_TTL_SECONDS: '0' }).cacheTtlMs).toBe(0);
    expect(readSecretStoreConfig({}).cacheTtlMs).toBeUndefined();
    expect(readSecretStoreConfig({ CACHE_TTL_SECONDS: '' }).cacheTtlMs).toBeUndefined();
  });

  it.each(['-1', '1.5', '60s', ' 5', '1e3', '1234567890'])('refuses CACHE_TTL_SECONDS=%j', (value) => {
    expect(() => readSecretStoreConfig({ CACHE_TTL_SECONDS: value })).toThrow(
      `CACHE_TTL_SECONDS must be a non-negative integer, not '${value}'`,
    );
  });

  it('reads WATCH_STALENESS_MS and leaves the bound to the library when it is unset', () => {
    expect(readSecretStoreConfig({ WATCH_STALENESS_MS: '600000' }).watchStalenessMs).toBe(600_000);
    expect(readSecretStoreConfig({}).watchStalenessMs).toBeUndefined();
    expect(readSecretStoreConfig({ WATCH_STALENESS_MS: '' }).watchStalenessMs).toBeUndefined();
  });

  it.each(['0', '-1', '1.5', '2s', ' 5', '1e3', '1234567890'])('refuses WATCH_STALENESS_MS=%j', (value) => {
    expect(() => readSecretStoreConfig({ WATCH_STALENESS_MS: value })).toThrow(
      `WATCH_STALENESS_MS must be a positive integer, not '${value}'`,
    );
  });

  it('refuses an unknown VERIFICATION, and local verification of legacy tokens', () => {
    expect(() => readSecretStoreConfig({ VERIFICATION: 'remote' })).toThrow(/VERIFICATION must be one of/);
    expect(() => readSecretStoreConfig({ VERIFICATION: 'local', AUTH_MODE: 'legacy' })).toThrow(
      /needs AUTH_MODE=projected/,
    );
  });
});
