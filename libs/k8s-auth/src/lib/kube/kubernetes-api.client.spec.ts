import { DEFAULTS } from '../module/k8s-auth.constants';
import { resolveOptions } from '../module/resolved-options';
import { maxConnections } from './kubernetes-api.client';

describe('maxConnections', () => {
  it('leaves a connection for every review either bound lets through, and room for the other calls', () => {
    const others = maxConnections({ maxReviewsInFlight: 1, maxAccessReviewsInFlight: 1 }) - 2;
    expect(others).toBeGreaterThan(0);
    expect(maxConnections(resolveOptions({}))).toBe(
      DEFAULTS.maxReviewsInFlight + DEFAULTS.maxAccessReviewsInFlight + others,
    );
    expect(maxConnections({ maxReviewsInFlight: 200, maxAccessReviewsInFlight: 10 })).toBe(210 + others);
  });
});
