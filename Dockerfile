# One image recipe for both services: APP is `api` or `secret-store`. Build context: the repository root.
#   docker build --build-arg APP=api -t k8s-auth/api .
#   docker build --build-arg APP=secret-store -t k8s-auth/secret-store .
ARG APP=api

# --- build: the whole workspace, then the webpack bundle in dist/apps/$APP
FROM node:20-bookworm-slim AS build
ARG APP
WORKDIR /workspace
ENV CI=true NX_DAEMON=false NX_NO_CLOUD=true NX_SKIP_NX_CACHE=true
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npx nx build "$APP" --outputStyle=stream

# --- runtime: the bundle and its production dependencies only
FROM node:20-bookworm-slim AS runtime
ARG APP
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /workspace/dist/apps/${APP}/ ./
# The build generates package.json and a pruned package-lock.json (generatePackageJson in
# webpack.config.js): install exactly the versions the bundle was built with.
RUN npm ci --omit=dev --no-audit --no-fund \
  && npm cache clean --force
# uid/gid 1000 (the image's 'node' user), numeric so that runAsNonRoot can verify it.
USER 1000:1000
# The port comes from LISTEN_ADDR (api :8080, secret-store :8081).
EXPOSE 8080 8081
CMD ["node", "main.js"]
