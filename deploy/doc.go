// Package deploy holds no code: its tests check, without Docker, that the
// deployment files at the root of the module agree with the binary and the
// API contract.
//
//   - docker-compose.yml loads with the Compose specification's own loader;
//     every service has a health check, starts after what it needs is
//     healthy, and sets only environment variables the binary reads;
//   - the Dockerfile's final stage runs as a user other than root;
//   - the k6 scripts in load/ parse as ES modules and request only operations
//     that api/openapi.json defines.
//
// What they cannot check is whether the images build and the containers
// become healthy: that needs a Docker engine (docker compose up --wait).
package deploy
