# The face store of several replicas: one PostgreSQL, registered in Consul as
# image-classification-postgres. The service job reads DATABASE_URL from its own Nomad Variable:
#   nomad var put nomad/jobs/image-classification-postgres POSTGRES_PASSWORD=...
#   nomad var put nomad/jobs/image-classification \
#     DATABASE_URL=postgresql://faces:PASSWORD@image-classification-postgres.service.consul:5432/faces
#   nomad job run nomad/postgres.nomad.hcl
# A database, not a cache: its data lives on the client's host volume "image-classification-postgres"
# (client config: host_volume "image-classification-postgres" { path = "/srv/postgres" }), so
# the job is pinned to the hosts that have it. Back it up with pg_dump (docs/faces.md).
job "image-classification-postgres" {
  datacenters = ["dc1"]
  type        = "service"

  group "postgres" {
    count = 1

    volume "data" {
      type      = "host"
      source    = "image-classification-postgres"
      read_only = false
    }

    network {
      port "postgres" {
        static = 5432
        to     = 5432
      }
    }

    service {
      name     = "image-classification-postgres"
      port     = "postgres"
      provider = "consul"

      check {
        name     = "accepts connections"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "postgres" {
      driver = "docker"

      config {
        image = "postgres:17.6"
        ports = ["postgres"]
      }

      volume_mount {
        volume      = "data"
        destination = "/var/lib/postgresql/data"
      }

      env {
        POSTGRES_USER = "faces"
        POSTGRES_DB   = "faces"
        PGDATA        = "/var/lib/postgresql/data/pgdata"
      }

      # The password from the job's Nomad Variable, never a literal in this file.
      template {
        destination = "secrets/postgres.env"
        env         = true
        change_mode = "restart"
        data        = <<EOT
{{- with nomadVar "nomad/jobs/image-classification-postgres" }}
POSTGRES_PASSWORD="{{ .POSTGRES_PASSWORD }}"
{{- end }}
EOT
      }

      # Stopping: PostgreSQL's "fast" shutdown on SIGINT, given time to write its checkpoint.
      kill_signal  = "SIGINT"
      kill_timeout = "60s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
