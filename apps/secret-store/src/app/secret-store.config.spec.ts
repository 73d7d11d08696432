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

  it('refuses an unknown VERIFICATION, and local verification of legacy tokens', () => {
    expect(() => readSecretStoreConfig({ VERIFICATION: 'remote' })).toThrow(/VERIFICATION must be one of/);
    expect(() => readSecretStoreConfig({ VERIFICATION: 'local', AUTH_MODE: 'legacy' })).toThrow(
      /needs AUTH_MODE=projected/,
    );
  });
});
