# syntax=docker/dockerfile:1
# Gatehouse image: `docker build -t gatehouse:latest .`
#   docker run --rm -p 9191:9191 -p 9193:9193 gatehouse:latest \
#     serve --policies /app/policies --trust-domain shop.example
# Without --trust-domain (or GATEHOUSE_TRUST_DOMAIN) every caller is refused with 401.

# ---- build: all dependencies, TypeScript compiled to dist/ ----
FROM node:24.22.3-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

# ---- runtime: production dependencies, dist/, protos/ and the example policies ----
FROM node:24.22.3-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The server loads its .proto files from ../../protos relative to dist/server.
COPY protos ./protos
COPY policies ./policies
# Numeric, so Kubernetes' runAsNonRoot can verify it; no home directory is needed.
USER 10001:10001
# 9191 gRPC Check + health, 9192 HTTP authorization mode (--http-port), 9193 admin.
EXPOSE 9191 9192 9193
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve", "--policies", "/app/policies"]
