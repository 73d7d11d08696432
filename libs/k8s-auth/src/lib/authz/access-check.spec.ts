import {
  type AccessCheck,
  describeAccess,
  InvalidRouteParameterError,
  resolveAccessChecks,
  validateAccessChecks,
} from './access-check';
import { PolicyConfigurationError } from '../guard/route-policy';

const where = 'SecretsController.read';

function validationError(checks: unknown[]): PolicyConfigurationError {
  try {
    validateAccessChecks(checks, where);
  } catch (error) {
    if (error instanceof PolicyConfigurationError) return error;
    throw error;
  }
  throw new Error('expected validateAccessChecks to throw');
}

describe('validateAccessChecks', () => {
  it.each<[string, AccessCheck]>([
    ['a core-group resource', { verb: 'list', resource: 'pods', namespace: 'default' }],
    ['the core group spelt ""', { verb: 'get', group: '', resource: 'configmaps' }],
    [
      'every field',
      {
        verb: 'get',
        group: 'secret-store.example.com',
        resource: 'secrets',
        subresource: 'versions',
        name: 'db-password',
        namespace: 'secret-store',
      },
    ],
    [
      'a name from a route parameter',
      { verb: 'get', group: 'x.example.com', resource: 'secrets', name: { param: 'name' } },
    ],
    ['a namespace from a route parameter', { verb: 'list', resource: 'secrets', namespace: { param: 'ns' } }],
    [
      'a fixed name that is not a DNS name',
      { verb: 'bind', group: 'rbac.authorization.k8s.io', resource: 'clusterroles', name: 'system:auth-delegator' },
    ],
    ['wildcards', { verb: '*', group: '*', resource: '*' }],
    ['a custom verb', { verb: 'impersonate', resource: 'serviceaccounts' }],
    ['a non-resource check', { path: '/metrics', verb: 'get' }],
  ])('accepts %s and returns an equal copy', (_, check) => {
    const [validated] = validateAccessChecks([check], where);
    expect(validated).toEqual(check);
    expect(validated).not.toBe(check);
  });

  it('accepts no checks at all', () => {
    expect(validateAccessChecks([], where)).toEqual([]);
  });

  it.each<[string, unknown, RegExp]>([
    ['null', null, /check 2 is not an object/],
    ['a string', 'get secrets', /check 2 is not an object/],
    ['a list', [{ verb: 'get', resource: 'secrets' }], /check 2 is not an object/],
    ['a typo in a field name', { verb: 'get', resource: 'secrets', names: 'x' }, /unknown field "names"/],
    [
      'resource fields in a non-resource check',
      { path: '/x', verb: 'get', resource: 'secrets' },
      /unknown field "resource"/,
    ],
    ['no verb', { resource: 'secrets' }, /verb of type undefined is not a verb/],
    ['an empty verb', { verb: '', resource: 'secrets' }, /verb "" is not a verb/],
    ['a verb with a space', { verb: 'get all', resource: 'secrets' }, /verb "get all"/],
    ['no resource', { verb: 'get' }, /resource of type undefined/],
    [
      'a resource with a group in it',
      { verb: 'get', resource: 'secrets.example.com' },
      /resource "secrets.example.com"/,
    ],
    ['an upper-case resource', { verb: 'get', resource: 'Secrets' }, /resource "Secrets"/],
    ['a group with a slash', { verb: 'get', group: 'example.com/v1', resource: 'x' }, /group "example.com\/v1"/],
    ['a subresource with a slash', { verb: 'get', resource: 'pods', subresource: 'log/x' }, /subresource "log\/x"/],
    ['an empty name', { verb: 'get', resource: 'secrets', name: '' }, /name "" is not valid/],
    ['a name with a slash', { verb: 'get', resource: 'secrets', name: 'a/b' }, /name "a\/b" is not valid/],
    ['a name of the wrong type', { verb: 'get', resource: 'secrets', name: 7 }, /name must be a string or \{ param/],
    ['a param with extra fields', { verb: 'get', resource: 'secrets', name: { param: 'n', x: 1 } }, /name must be/],
    ['an empty param', { verb: 'get', resource: 'secrets', name: { param: '' } }, /name must be/],
    ['a param with a colon', { verb: 'get', resource: 'secrets', name: { param: ':name' } }, /name must be/],
    [
      'a namespace that is not a label',
      { verb: 'get', resource: 'secrets', namespace: 'a.b' },
      /namespace "a.b" is not valid/,
    ],
    ['a relative path', { path: 'metrics', verb: 'get' }, /path "metrics" is not a URL path/],
    ['a path with a space', { path: '/a b', verb: 'get' }, /path "\/a b"/],
  ])('refuses %s, naming the route and the check', (_, check, message) => {
    const error = validationError([{ verb: 'get', resource: 'secrets' }, check]);
    expect(error.message).toMatch(/^SecretsController\.read: @RequireAccess check 2/);
    expect(error.message).toMatch(message);
  });
});

describe('resolveAccessChecks', () => {
  const byName: AccessCheck = {
    verb: 'get',
    group: 'secret-store.example.com',
    resource: 'secrets',
    namespace: 'secret-store',
    name: { param: 'name' },
  };

  it('fills in route parameters', () => {
    expect(resolveAccessChecks([byName], { name: 'db-password' }, where)).toEqual([
      {
        resourceAttributes: {
          verb: 'get',
          group: 'secret-store.example.com',
          resource: 'secrets',
          namespace: 'secret-store',
          name: 'db-password',
        },
      },
    ]);
  });

  it('fills in a namespace from the route and leaves out what is not set', () => {
    const check: AccessCheck = { verb: 'list', resource: 'secrets', namespace: { param: 'ns' } };
    expect(resolveAccessChecks([check], { ns: 'team-a' }, where)).toEqual([
      { resourceAttributes: { verb: 'list', resource: 'secrets', namespace: 'team-a' } },
    ]);
  });

  it('turns a non-resource check into non-resource attributes', () => {
    expect(resolveAccessChecks([{ path: '/metrics', verb: 'get' }], undefined, where)).toEqual([
      { nonResourceAttributes: { path: '/metrics', verb: 'get' } },
    ]);
  });

  it.each([
    ['upper case', 'DB-password'],
    ['a slash', 'a/b'],
    ['dots only', '..'],
    ['a leading dash', '-a'],
    ['a space', 'a b'],
    ['an empty value', ''],
    ['253 characters and one more', 'a'.repeat(254)],
  ])('refuses a name with %s', (_, value) => {
    expect(() => resolveAccessChecks([byName], { name: value }, where)).toThrow(InvalidRouteParameterError);
  });

  it('refuses a value that is not a string (e.g. an array from a query-like parser)', () => {
    expect(() => resolveAccessChecks([byName], { name: ['a'] }, where)).toThrow(InvalidRouteParameterError);
  });

  it('refuses a namespace that is a subdomain but not a label', () => {
    const check: AccessCheck = { verb: 'list', resource: 'secrets', namespace: { param: 'ns' } };
    expect(() => resolveAccessChecks([check], { ns: 'a.b' }, where)).toThrow(InvalidRouteParameterError);
  });

  it('accepts the longest subdomain', () => {
    const name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    expect(name).toHaveLength(253);
    expect(resolveAccessChecks([byName], { name }, where)[0]).toMatchObject({ resourceAttributes: { name } });
  });

  it('names the parameter, not the value, in the error', () => {
    try {
      resolveAccessChecks([byName], { name: 'Evil<script>' }, where);
      throw new Error('expected a throw');
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidRouteParameterError);
      expect((error as Error).message).toBe('route parameter "name" is not a valid name');
    }
  });

  it('reports a parameter the route does not have as a configuration error', () => {
    expect(() => resolveAccessChecks([byName], { id: 'x' }, where)).toThrow(
      new PolicyConfigurationError(
        'SecretsController.read: @RequireAccess reads the route parameter "name", which this route does not have',
      ),
    );
    expect(() => resolveAccessChecks([byName], undefined, where)).toThrow(PolicyConfigurationError);
  });

  it('does not read parameters from the prototype chain', () => {
    const check: AccessCheck = { verb: 'get', resource: 'secrets', name: { param: 'constructor' } };
    expect(() => resolveAccessChecks([check], {}, where)).toThrow(PolicyConfigurationError);
  });
});

describe('describeAccess', () => {
  it('describes resource and non-resource reviews for logs', () => {
    expect(
      describeAccess({
        resourceAttributes: {
          verb: 'get',
          group: 'secret-store.example.com',
          resource: 'secrets',
          subresource: 'versions',
          name: 'db',
          namespace: 'secret-store',
        },
      }),
    ).toBe('get secret-store.example.com/secrets/versions "db" in secret-store');
    expect(describeAccess({ resourceAttributes: { verb: 'list', resource: 'nodes' } })).toBe(
      'list nodes (cluster-wide)',
    );
    expect(describeAccess({ nonResourceAttributes: { path: '/metrics', verb: 'get' } })).toBe('get /metrics');
  });
});
