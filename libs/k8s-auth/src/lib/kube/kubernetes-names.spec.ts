import { isDns1123Label, isDns1123Subdomain, parseServiceAccountUsername } from './kubernetes-names';

describe('parseServiceAccountUsername', () => {
  it('reads namespace and name', () => {
    expect(parseServiceAccountUsername('system:serviceaccount:team-a:billing')).toEqual({
      namespace: 'team-a',
      name: 'billing',
    });
  });

  it.each([
    ['default', 'default'],
    ['kube-system', 'coredns'],
    ['a', 'b'],
    ['0', '9'],
    ['ns1', 'svc.account-2'],
    ['x'.repeat(63), 'y'.repeat(253)],
    ['n', 'a.b.c'],
  ])('accepts namespace %s and name %s', (namespace, name) => {
    expect(parseServiceAccountUsername(`system:serviceaccount:${namespace}:${name}`)).toEqual({ namespace, name });
  });

  it.each([
    ['another kind of subject', 'system:node:worker-1'],
    ['the group of all service accounts', 'system:serviceaccounts'],
    ['a namespace group', 'system:serviceaccounts:team-a'],
    ['a plural prefix with a name', 'system:serviceaccounts:team-a:billing'],
    ['a user', 'alice'],
    ['an admin user', 'kubernetes-admin'],
    ['an empty string', ''],
    ['the bare prefix', 'system:serviceaccount:'],
    ['no name', 'system:serviceaccount:team-a'],
    ['an empty name', 'system:serviceaccount:team-a:'],
    ['an empty namespace', 'system:serviceaccount::billing'],
    ['an extra colon part', 'system:serviceaccount:team-a:billing:extra'],
    ['a trailing colon', 'system:serviceaccount:team-a:billing:'],
    ['an upper-case prefix', 'System:ServiceAccount:team-a:billing'],
    ['a leading space', ' system:serviceaccount:team-a:billing'],
    ['a trailing space', 'system:serviceaccount:team-a:billing '],
    ['a trailing newline', 'system:serviceaccount:team-a:billing\n'],
    ['a newline inside', 'system:serviceaccount:team-a\n:billing'],
    ['a prefix not at the start', 'x-system:serviceaccount:team-a:billing'],
  ])('refuses %s', (_, username) => {
    expect(parseServiceAccountUsername(username)).toBeUndefined();
  });

  it.each([
    ['upper case', 'Team-A'],
    ['a leading hyphen', '-team'],
    ['a trailing hyphen', 'team-'],
    ['a dot', 'team.a'],
    ['an underscore', 'team_a'],
    ['64 characters', 'x'.repeat(64)],
    ['a wildcard', '*'],
    ['non-ASCII', 'tëam'],
  ])('refuses a namespace with %s', (_, namespace) => {
    expect(parseServiceAccountUsername(`system:serviceaccount:${namespace}:billing`)).toBeUndefined();
  });

  it.each([
    ['upper case', 'Billing'],
    ['a leading hyphen', '-billing'],
    ['a trailing hyphen', 'billing-'],
    ['a leading dot', '.billing'],
    ['a trailing dot', 'billing.'],
    ['two dots in a row', 'bill..ing'],
    ['a hyphen next to a dot', 'bill-.ing'],
    ['an underscore', 'bill_ing'],
    ['254 characters', 'y'.repeat(254)],
    ['a wildcard', 'billing-*'],
    ['a slash', 'billing/x'],
  ])('refuses a name with %s', (_, name) => {
    expect(parseServiceAccountUsername(`system:serviceaccount:team-a:${name}`)).toBeUndefined();
  });
});

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
