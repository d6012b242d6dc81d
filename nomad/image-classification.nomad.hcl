# A service job: N stateless replicas behind Consul service discovery.
#   nomad job run nomad/image-classification.nomad.hcl
# Scale out by raising `count`: with REDIS_URL the replicas share one result cache and one
# /report through Redis (nomad/redis.nomad.hcl runs one, registered in Consul as
# image-classification-redis; or point REDIS_URL at your own). Without Redis, or while it is
# away, each replica serves from its own memory.
# Faces (FACE_ENABLED) need one face store for every replica: PostgreSQL (nomad/postgres.nomad.hcl),
# named by DATABASE_URL in the job's Nomad Variable. Without DATABASE_URL each replica would keep
# its own SQLite store in DATA_DIR and they would disagree: FACE_ENABLED stays "false" until it is set.
# Secrets come from Nomad Variables, never from this file (see the template block):
#   nomad var put nomad/jobs/image-classification API_KEYS=key1,key2 REDIS_PASSWORD=... DATABASE_URL=postgresql://...
job "image-classification" {
  datacenters = ["dc1"]
  type        = "service"

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "5m"
    auto_revert      = true
  }

  group "api" {
    count = 2

    network {
      port "http" {
        to = 5001
      }
    }

    service {
      name     = "image-classification"
      port     = "http"
      provider = "consul"
      tags     = ["http", "image-classification"]

      # Liveness: the process serves. Failing it restarts the task.
      check {
        name     = "alive"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "120s"
        }
      }

      # Readiness: every model loaded, not draining, no stuck inference. Consul routes
      # traffic only to instances passing it.
      check {
        name     = "ready"
        type     = "http"
        path     = "/ready"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "server" {
      driver = "docker"

      config {
        image = "registry.example.com/image-classification-service:latest"
        ports = ["http"]
      }

      # Before the signal, Nomad takes the service out of Consul and waits shutdown_delay, so
      # no new request is routed here while it drains. Then SIGTERM, kill_timeout, SIGKILL:
      # kill_timeout is longer than DRAIN_SECONDS.
      shutdown_delay = "5s"
      kill_signal    = "SIGTERM"
      kill_timeout   = "30s"

      env {
        IMAGE_CLASSIFICATION_ENABLED = "true"
        IMAGE_CLASSIFICATION_MODEL   = "mobilenet"
        OBJECT_DETECTION_ENABLED     = "true"
        OBJECT_DETECTION_MODEL       = "yolo"
        # Faces: "true" once DATABASE_URL is set (see the top of this file).
        FACE_ENABLED                 = "false"
        FACE_MODEL                   = "dlib"
        FACE_MAX_DISTANCE            = "0"
        # The SQLite face store of a single replica (unused with DATABASE_URL): the task's own
        # directory, kept across restarts of the task, lost with the allocation.
        DATA_DIR                     = "/alloc/data/faces"
        MODELS_DIR                   = "/app/models"
        MODEL_DOWNLOAD               = "false"
        PRELOAD_MODELS               = "true"
        # Serving processes in this task, each with its own models: 1 on CPUs (the model uses
        # every core already); on a GPU host, more (docs/operations.md, "Several serving processes").
        WORKERS                      = "1"
        INFERENCE_CONCURRENCY             = "4"
        PORT                         = "5001"
        MAX_UPLOAD_MB                = "10"
        MAX_IMAGE_PIXELS             = "40000000"
        FETCH_ALLOW_HOSTS            = ""
        MAX_IMAGES_PER_REQUEST                    = "16"
        CACHE_MAXSIZE                = "1024"
        CACHE_TTL                    = "3600"
        MONITOR_WINDOW               = "259200"
        REPORT_TOP_N                 = "10"
        # Consul DNS name of the Redis job; "" keeps the cache and the report in each replica.
        REDIS_URL                    = "redis://image-classification-redis.service.consul:6379/0"
        CACHE_PREFIX                 = "ics"
        MAX_QUEUE                    = "8"
        INFERENCE_TIMEOUT_S          = "30"
        DRAIN_SECONDS                = "25"
        DRAIN_GRACE_S                = "5"
        CHANNEL_TIMEOUT_S            = "30"
        CONNECTION_LIMIT             = "10000"
        REQUEST_GRACE_S              = "10"
        REQUEST_MIN_RATE             = "500"
        MAX_BATCH_SIZE               = "8"
        BATCH_TIMEOUT_MS             = "5"
        # The CPUs this task gets (resources.cpu below); the host's count would oversubscribe.
        INTRA_OP_THREADS             = "2"
        INTER_OP_THREADS             = "1"
        INFERENCE_RUNTIME            = "openvino"
        INFERENCE_PRECISION          = "f32"
        # The OpenVINO device: CPU, or GPU/AUTO on a client with an Intel GPU (docs/neighbours.md);
        # a device the host lacks stops the start.
        OPENVINO_DEVICE              = "CPU"
        # Web pages of other origins allowed to call the API from a browser (docs/neighbours.md):
        # "" none, "*" any, or a comma-separated list such as "https://dashboard.example".
        CORS_ORIGINS                 = ""
        # The frameworks' own log lines (TensorFlow, absl, gRPC, LiteRT); "true" while debugging one.
        FRAMEWORK_LOGS               = "false"
        # Remote inference engines (docs/remote-engines.md): a model folder under
        # MODELS_DIR whose model.json says "format": "kserve_v2" (Triton, KServe, OVMS, MLServer)
        # or "tfserving", with the engine's "url" (e.g. http://triton.service.consul:8000, or
        # grpc://triton.service.consul:8001 for the faster gRPC transport) and "model". Name such folders in IMAGE_CLASSIFICATION_MODEL / OBJECT_DETECTION_MODEL like
        # any other. Headers for the engine (API keys, tokens) are never written in model.json:
        # "headers_env": {"Authorization": "ENGINE_TOKEN"} names a variable of this task, set
        # from Vault or Nomad variables in a template block (env = true), not in this env block.
        # With PRELOAD_MODELS=true a remote model is retried every 5 s until its engine answers;
        # /ready (the Consul check above) shows each engine's host and state.
      }

      # Secrets from the job's Nomad Variable (nomad/jobs/image-classification), rendered into
      # the task's private secrets/ directory and read as environment variables: never a literal
      # in this file, never in `nomad job inspect`. An item that is not set is not rendered
      # (no API_KEYS: the API is open; no REDIS_PASSWORD: Redis without a password; no
      # DATABASE_URL: the face store in DATA_DIR).
      # With Vault instead: {{ with secret "kv/data/image-classification" }}...{{ end }}.
      template {
        destination = "secrets/service.env"
        env         = true
        change_mode = "restart"
        data        = <<EOT
{{- if nomadVarExists "nomad/jobs/image-classification" }}
{{- with nomadVar "nomad/jobs/image-classification" }}
{{- if .API_KEYS }}
API_KEYS="{{ .API_KEYS }}"
{{- end }}
{{- if .REDIS_PASSWORD }}
REDIS_PASSWORD="{{ .REDIS_PASSWORD }}"
{{- end }}
{{- if .DATABASE_URL }}
DATABASE_URL="{{ .DATABASE_URL }}"
{{- end }}
{{- end }}
{{- end }}
EOT
      }

      # Memory, measured (docs/reliability.md): mobilenet + yolo loaded and warm 1.57 GB
      # resident, 2.33 GB peak while serving 40 MP images, back to 1.52 GB after them.
      resources {
        cpu    = 2000
        memory = 3072
      }
    }
  }
}
