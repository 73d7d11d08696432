import { Reflector } from '@nestjs/core';
import type { AccessCheck } from './access-check';
import { REQUIRE_ACCESS_KEY } from '../module/k8s-auth.constants';
import { RequireAccess } from './require-access.decorator';

const get: AccessCheck = { verb: 'get', resource: 'secrets' };
const list: AccessCheck = { verb: 'list', resource: 'secrets' };
const metrics: AccessCheck = { path: '/metrics', verb: 'get' };

@RequireAccess(get)
@RequireAccess(metrics)
class Controller {
  @RequireAccess(get, list)
  @RequireAccess(metrics)
  both() {
    return 'both';
  }

  plain() {
    return 'plain';
  }
}

class Child extends Controller {}

@RequireAccess(list)
class ChildWithOwn extends Controller {}

describe('@RequireAccess', () => {
  const reflector = new Reflector();

  it('collects every check of every use on a method, in the order they are written', () => {
    expect(reflector.get(REQUIRE_ACCESS_KEY, Controller.prototype.both)).toEqual([get, list, metrics]);
  });

  it('collects the checks of a controller apart from those of its methods', () => {
    expect(reflector.get(REQUIRE_ACCESS_KEY, Controller)).toEqual([get, metrics]);
    expect(reflector.get(REQUIRE_ACCESS_KEY, Controller.prototype.plain)).toBeUndefined();
  });

  it("adds a subclass's checks to those it inherits", () => {
    expect(reflector.get(REQUIRE_ACCESS_KEY, Child)).toEqual([get, metrics]);
    expect(reflector.get(REQUIRE_ACCESS_KEY, ChildWithOwn)).toEqual([list, get, metrics]);
    expect(reflector.get(REQUIRE_ACCESS_KEY, Controller)).toEqual([get, metrics]);
  });
});
