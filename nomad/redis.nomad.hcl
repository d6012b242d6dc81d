# The optional shared store: one Redis for the image-classification replicas' result cache and
# usage report, registered in Consul as image-classification-redis (the service job's
# REDIS_URL names it: redis://image-classification-redis.service.consul:6379/0).
#   nomad var put nomad/jobs/image-classification-redis REDIS_PASSWORD=...   # the same password
#   nomad job run nomad/redis.nomad.hcl
# A cache, not a database: no persistence; a memory limit with LRU eviction, so a full Redis
# makes room instead of refusing writes. The service keeps answering while this job is down.
job "image-classification-redis" {
  datacenters = ["dc1"]
  type        = "service"

  group "redis" {
    count = 1

    network {
      port "redis" {
        static = 6379
        to     = 6379
      }
    }

    service {
      name     = "image-classification-redis"
      port     = "redis"
      provider = "consul"

      check {
        name     = "accepts connections"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = "docker"

      config {
        image = "redis:7.4-alpine"
        ports = ["redis"]
        args  = ["redis-server", "/secrets/redis.conf"]
      }

      # maxmemory: what the cache and a MONITOR_WINDOW of report may hold (docs/operations.md, "Sizing");
      # the task's memory below leaves room for Redis' own overhead. protected-mode is off so
      # the replicas on other hosts can connect: set REDIS_PASSWORD, or only the cluster
      # network stands between Redis and a client (the password: letters and digits).
      template {
        destination = "secrets/redis.conf"
        change_mode = "restart"
        data        = <<EOT
bind 0.0.0.0
port 6379
protected-mode no
maxmemory 256mb
maxmemory-policy allkeys-lru
save ""
appendonly no
{{- if nomadVarExists "nomad/jobs/image-classification-redis" }}
{{- with nomadVar "nomad/jobs/image-classification-redis" }}
{{- if .REDIS_PASSWORD }}
requirepass "{{ .REDIS_PASSWORD }}"
{{- end }}
{{- end }}
{{- end }}
EOT
      }

      resources {
        cpu    = 500
        memory = 384
      }
    }
  }
}
