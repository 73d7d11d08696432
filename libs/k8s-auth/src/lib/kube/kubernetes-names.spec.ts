import { isDns1123Label, isDns1123Subdomain } from './kubernetes-names';

describe('isDns1123Label', () => {
  it('accepts labels up to 63 characters', () => {
    expect(isDns1123Label('team-a')).toBe(true);
    expect(isDns1123Label('a'.repeat(63))).toBe(true);
    expect(isDns1123Label('a'.repeat(64))).toBe(false);
    expect(isDns1123Label('')).toBe(false);
    expect(isDns1123Label('a.b')).toBe(false);
  });
});

describe('isDns1123Subdomain', () => {
  it('accepts dotted names up to 253 characters', () => {
    expect(isDns1123Subdomain('a.b-c.d')).toBe(true);
    expect(isDns1123Subdomain('a'.repeat(253))).toBe(true);
    expect(isDns1123Subdomain('a'.repeat(254))).toBe(false);
    expect(isDns1123Subdomain('')).toBe(false);
    expect(isDns1123Subdomain('a.')).toBe(false);
  });
});
