import {
  CallerPolicy,
  isCallerAllowed,
  isEmptyCallerPolicy,
  PolicyConfigurationError,
  validateCallerPolicy,
} from './route-policy';

const where = 'SecretsController.read';

function validationError(policy: CallerPolicy): PolicyConfigurationError {
  try {
    validateCallerPolicy(policy, where);
  } catch (error) {
    if (error instanceof PolicyConfigurationError) return error;
    throw error;
  }
  throw new Error('expected validateCallerPolicy to throw');
}

describe('validateCallerPolicy', () => {
  it.each<[string, CallerPolicy]>([
    ['service accounts only', { serviceAccounts: ['team-a:billing', 'kube-system:coredns'] }],
    ['namespaces only', { namespaces: ['team-a'] }],
    ['both', { serviceAccounts: ['team-a:billing'], namespaces: ['team-b'] }],
    ['one list empty and the other not', { serviceAccounts: [], namespaces: ['team-b'] }],
    ['a dotted service account name', { serviceAccounts: ['team-a:billing.v2'] }],
    ['the longest names Kubernetes allows', { serviceAccounts: [`${'n'.repeat(63)}:${'s'.repeat(253)}`] }],
  ])('accepts %s', (_, policy) => {
    expect(() => validateCallerPolicy(policy, where)).not.toThrow();
  });

  it.each<[string, CallerPolicy]>([
    ['no lists', {}],
    ['two empty lists', { serviceAccounts: [], namespaces: [] }],
    ['one empty list', { namespaces: [] }],
  ])('refuses a policy that allows nobody: %s', (_, policy) => {
    const error = validationError(policy);
    expect(error.message).toBe('SecretsController.read allows nobody: add @AllowServiceAccounts or @AllowNamespaces');
  });

  it.each([
    ['a bare name', 'billing'],
    ['a wildcard', '*'],
    ['a wildcard name', 'team-a:*'],
    ['a wildcard namespace', '*:billing'],
    ['a glob suffix', 'team-a:billing-*'],
    ['a regex', 'team-a:billing.*'],
    ['the full username', 'system:serviceaccount:team-a:billing'],
    ['a namespace prefix only', 'team-a:'],
    ['a name only', ':billing'],
    ['an empty entry', ''],
    ['a leading space', ' team-a:billing'],
    ['a trailing space', 'team-a:billing '],
    ['a space after the colon', 'team-a: billing'],
    ['upper case', 'Team-A:Billing'],
    ['a slash separator', 'team-a/billing'],
    ['a dotted namespace', 'team.a:billing'],
    ['a namespace of 64 characters', `${'n'.repeat(64)}:billing`],
    ['a name of 254 characters', `team-a:${'s'.repeat(254)}`],
  ])('refuses a service account entry with %s', (_, entry) => {
    const error = validationError({ serviceAccounts: ['team-a:fine', entry] });
    expect(error.message).toContain(where);
    expect(error.message).toContain('@AllowServiceAccounts');
    expect(error.message).toContain(JSON.stringify(entry));
  });

  it.each([
    ['a wildcard', '*'],
    ['a glob', 'team-*'],
    ['a service account', 'team-a:billing'],
    ['an empty entry', ''],
    ['whitespace', ' team-a'],
    ['upper case', 'Team-A'],
    ['a dot', 'team.a'],
    ['64 characters', 'n'.repeat(64)],
  ])('refuses a namespace entry with %s', (_, entry) => {
    const error = validationError({ namespaces: [entry] });
    expect(error.message).toContain(where);
    expect(error.message).toContain('@AllowNamespaces');
    expect(error.message).toContain(JSON.stringify(entry));
  });

  it('refuses entries that are not strings, as plain JavaScript could pass', () => {
    expect(validationError({ serviceAccounts: [42 as unknown as string] }).message).toContain('of type number');
    expect(validationError({ namespaces: [null as unknown as string] }).message).toContain('of type null');
  });

  it('refuses a list that is not an array', () => {
    const error = validationError({ namespaces: 'team-a' as unknown as string[] });
    expect(error.message).toContain('@AllowNamespaces expects a list');
  });

  it('throws an Error subclass with its own name', () => {
    const error = validationError({});
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('PolicyConfigurationError');
  });
});

describe('validateCallerPolicy with allowEmpty (the route has @RequireAccess)', () => {
  it.each<[string, CallerPolicy]>([
    ['no lists', {}],
    ['two empty lists', { serviceAccounts: [], namespaces: [] }],
  ])('accepts a policy that names nobody: %s', (_, policy) => {
    expect(() => validateCallerPolicy(policy, where, { allowEmpty: true })).not.toThrow();
    expect(isEmptyCallerPolicy(policy)).toBe(true);
  });

  it('still checks the entries of a policy that names someone', () => {
    expect(() => validateCallerPolicy({ serviceAccounts: ['api'] }, where, { allowEmpty: true })).toThrow(
      PolicyConfigurationError,
    );
    expect(isEmptyCallerPolicy({ namespaces: ['api'] })).toBe(false);
  });
});

describe('isCallerAllowed', () => {
  const billing = { namespace: 'team-a', name: 'billing' };

  it('allows a listed service account', () => {
    expect(isCallerAllowed({ serviceAccounts: ['team-a:billing'] }, billing)).toBe(true);
    expect(isCallerAllowed({ serviceAccounts: ['team-b:other', 'team-a:billing'] }, billing)).toBe(true);
  });

  it('allows any service account of a listed namespace', () => {
    expect(isCallerAllowed({ namespaces: ['team-a'] }, billing)).toBe(true);
    expect(isCallerAllowed({ namespaces: ['team-a'] }, { namespace: 'team-a', name: 'anything' })).toBe(true);
  });

  it('allows when either list matches', () => {
    const policy = { serviceAccounts: ['team-b:reports'], namespaces: ['team-a'] };
    expect(isCallerAllowed(policy, billing)).toBe(true);
    expect(isCallerAllowed(policy, { namespace: 'team-b', name: 'reports' })).toBe(true);
    expect(isCallerAllowed(policy, { namespace: 'team-b', name: 'billing' })).toBe(false);
  });

  it('refuses a service account of the right name in another namespace', () => {
    expect(isCallerAllowed({ serviceAccounts: ['team-a:billing'] }, { namespace: 'team-b', name: 'billing' })).toBe(
      false,
    );
  });

  it('refuses a name or namespace that only shares a prefix with an allowed one', () => {
    const policy = { serviceAccounts: ['team-a:billing'], namespaces: ['prod'] };
    expect(isCallerAllowed(policy, { namespace: 'team-a', name: 'billing-admin' })).toBe(false);
    expect(isCallerAllowed(policy, { namespace: 'team-a', name: 'billin' })).toBe(false);
    expect(isCallerAllowed(policy, { namespace: 'team-ab', name: 'billing' })).toBe(false);
    expect(isCallerAllowed(policy, { namespace: 'team', name: 'a:billing' })).toBe(false);
    expect(isCallerAllowed(policy, { namespace: 'production', name: 'x' })).toBe(false);
    expect(isCallerAllowed(policy, { namespace: 'pro', name: 'x' })).toBe(false);
  });

  it('does not treat a namespace list entry as a service account or the other way round', () => {
    expect(isCallerAllowed({ namespaces: ['team-a:billing'] }, billing)).toBe(false);
    expect(isCallerAllowed({ serviceAccounts: ['team-a'] }, billing)).toBe(false);
  });

  it('refuses everyone under an empty policy', () => {
    expect(isCallerAllowed({}, billing)).toBe(false);
    expect(isCallerAllowed({ serviceAccounts: [], namespaces: [] }, billing)).toBe(false);
  });
});
