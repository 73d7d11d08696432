import { Test } from '@nestjs/testing';
import type { CallerIdentity } from '@k8s-auth/nestjs';
import { ReportsController } from './reports.controller';

// A unit test, with the `jest` block of package.json (nest new's, rootDir src): the controller alone, no guard.
describe('ReportsController', () => {
  it('answers with the caller the guard let in', async () => {
    const moduleRef = await Test.createTestingModule({ controllers: [ReportsController] }).compile();
    const caller = { username: 'system:serviceaccount:api:api' } as CallerIdentity;
    expect(moduleRef.get(ReportsController).summary(caller)).toEqual({ for: 'system:serviceaccount:api:api' });
  });
});
