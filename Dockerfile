# One image recipe for both services: APP is `api` or `secret-store`. Build context: the repository root.
#   docker build --build-arg APP=api -t k8s-auth/api .
#   docker build --build-arg APP=secret-store -t k8s-auth/secret-store .
# Build arguments:
#   BASE_IMAGE   the runtime stage's base (default node:20-bookworm-slim); without a registry,
#                scripts/images/base-image.sh makes a local stand-in and prints what to pass here
#   BUILD_IMAGE  the build stage's base (default BASE_IMAGE), e.g. one that trusts a TLS-inspecting proxy's CA
#   SOURCE_MAPS  `true` ships main.js.map next to main.js (default: none)
ARG BASE_IMAGE=node:20-bookworm-slim
ARG BUILD_IMAGE=${BASE_IMAGE}

# --- build: the whole workspace, then one self-contained bundle per service in dist/apps/<app>. Both services
# are built here and APP is not read, so the second image reuses every layer of this stage.
FROM ${BUILD_IMAGE} AS build
WORKDIR /workspace
ENV CI=true NX_DAEMON=false NX_NO_CLOUD=true NX_SKIP_NX_CACHE=true
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
ARG SOURCE_MAPS=false
RUN SOURCE_MAPS=${SOURCE_MAPS} npx nx run-many -t build -p api secret-store --outputStyle=stream

# --- runtime: the bundle only. main.js carries its dependencies (tools/service-webpack.js): no node_modules,
# no npm install here.
FROM ${BASE_IMAGE} AS runtime
ARG APP=api
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /workspace/dist/apps/${APP}/ ./
# uid/gid 1000 (the image's 'node' user), numeric so that runAsNonRoot can verify it.
USER 1000:1000
# The ports come from LISTEN_ADDR (api :8080, secret-store :8081) and GRPC_LISTEN_ADDR (secret-store :8082).
EXPOSE 8080 8081 8082
CMD ["node", "main.js"]
