{{/*
Names and labels (the usual chart conventions).
*/}}
{{- define "cxone-ingest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cxone-ingest.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cxone-ingest.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cxone-ingest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cxone-ingest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cxone-ingest.labels" -}}
helm.sh/chart: {{ include "cxone-ingest.chart" . }}
{{ include "cxone-ingest.selectorLabels" . }}
app.kubernetes.io/version: {{ include "cxone-ingest.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cxone-ingest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cxone-ingest.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image: repository[:tag][@digest]; the tag defaults to the chart's appVersion.
*/}}
{{- define "cxone-ingest.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "cxone-ingest.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "cxone-ingest.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Where mounted secrets live inside the container.
*/}}
{{- define "cxone-ingest.webhookSecretName" -}}
{{- default (printf "%s-webhook" (include "cxone-ingest.fullname" .)) .Values.webhookSecret.existingSecret }}
{{- end }}

{{- define "cxone-ingest.kafkaCaPath" -}}
{{- printf "%s/%s" .Values.kafka.caCertificate.mountPath .Values.kafka.caCertificate.key }}
{{- end }}

{{- define "cxone-ingest.dedupeCaPath" -}}
{{- printf "%s/%s" .Values.dedupe.caCertificate.mountPath .Values.dedupe.caCertificate.key }}
{{- end }}

{{/*
Listener addresses: an IPv6 host goes in brackets.
*/}}
{{- define "cxone-ingest.hostPort" -}}
{{- $host := index . 0 }}{{ $port := index . 1 }}
{{- if contains ":" $host }}{{ printf "[%s]:%d" $host (int $port) }}{{ else }}{{ printf "%s:%d" $host (int $port) }}{{ end }}
{{- end }}

{{- define "cxone-ingest.listen" -}}
{{- include "cxone-ingest.hostPort" (list .Values.listenHost .Values.ports.http) }}
{{- end }}

{{- define "cxone-ingest.adminListen" -}}
{{- include "cxone-ingest.hostPort" (list .Values.listenHost .Values.ports.admin) }}
{{- end }}

{{/*
Shutdown timing. On SIGTERM the service answers 503 on /readyz while it keeps accepting for
server.pre_stop_delay_ms (the pre-stop pause: load balancers and kube-proxy stop sending), then
drains in-flight requests for up to server.drain_timeout_ms, then closes its sinks (the Kafka
committer commits its gathered batch; bounded at 10 s). The grace period covers all three plus a
margin, so the kubelet never SIGKILLs a replica that is still finishing acknowledged work.
*/}}
{{- define "cxone-ingest.drainTimeoutMs" -}}
{{- $server := (.Values.config | default dict).server | default dict }}
{{- if hasKey $server "drain_timeout_ms" }}{{ int64 $server.drain_timeout_ms }}{{ else }}20000{{ end }}
{{- end }}

{{- define "cxone-ingest.terminationGracePeriodSeconds" -}}
{{- $preStop := int64 .Values.lifecycle.preStopDelaySeconds }}
{{- $drain := div (add (int64 (include "cxone-ingest.drainTimeoutMs" .)) 999) 1000 }}
{{- $sinkClose := 10 }}
{{- add $preStop $drain $sinkClose (int64 .Values.lifecycle.terminationMarginSeconds) }}
{{- end }}

{{/*
The service configuration, as a dict: the user's `config` plus the keys the chart owns.
The chart owns the listeners (they must match the container ports and probes), the webhook
secret files (they must match the mounted Secret) and the pre-stop delay (it is part of the
grace-period arithmetic above). Setting one of those in `config` is refused, naming the value
to use instead. Secrets never go through `config` (values end up in a ConfigMap).
*/}}
{{- define "cxone-ingest.configDict" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $server := get $cfg "server" | default dict }}
{{- $owned := dict "listen" "ports.http and listenHost" "admin_listen" "ports.admin and listenHost" "pre_stop_delay_ms" "lifecycle.preStopDelaySeconds" }}
{{- range $key, $instead := $owned }}
{{- if hasKey $server $key }}
{{- fail (printf "config.server.%s is set by the chart: use %s instead" $key $instead) }}
{{- end }}
{{- end }}
{{- $_ := set $server "listen" (include "cxone-ingest.listen" .) }}
{{- $_ = set $server "admin_listen" (include "cxone-ingest.adminListen" .) }}
{{- $_ = set $server "pre_stop_delay_ms" (mul (int64 .Values.lifecycle.preStopDelaySeconds) 1000) }}
{{- $_ = set $cfg "server" $server }}
{{- $signature := get $cfg "signature" | default dict }}
{{- if hasKey $signature "secrets" }}
{{- fail "config.signature.secrets would put webhook secrets into a ConfigMap: put them in a Secret and name it in webhookSecret.existingSecret / webhookSecret.keys" }}
{{- end }}
{{- if hasKey $signature "secret_files" }}
{{- fail "config.signature.secret_files is set by the chart from webhookSecret.keys: list the Secret's keys there" }}
{{- end }}
{{- if not .Values.sources }}
{{- $files := list }}
{{- range .Values.webhookSecret.keys }}
{{- $files = append $files (printf "%s/%s" $.Values.webhookSecret.mountPath .) }}
{{- end }}
{{- $_ = set $signature "secret_files" $files }}
{{- end }}
{{- $_ = set $cfg "signature" $signature }}
{{- if hasKey $cfg "sources" }}
{{- fail "config.sources is rendered by the chart from `sources` (with their secrets mounted as files): list them there" }}
{{- end }}
{{- with .Values.sources }}
{{- $_ = set $cfg "sources" (include "cxone-ingest.sources" $ | fromJson).sources }}
{{- end }}
{{- $contract := get $cfg "contract" | default dict }}
{{- if include "cxone-ingest.schemasConfigMap" . }}
{{- if hasKey $contract "schemas_dir" }}
{{- fail "config.contract.schemas_dir is set by the chart from `schemas` (the mounted ConfigMap): drop it from config" }}
{{- end }}
{{- $_ = set $contract "schemas_dir" .Values.schemas.mountPath }}
{{- $_ = set $cfg "contract" $contract }}
{{- end }}
{{- $kafka := get $cfg "kafka" | default dict }}
{{- if hasKey $kafka "instance_id" }}
{{- fail "config.kafka.instance_id would give every replica the same transactional.id (they would fence each other): leave it unset, each replica takes its pod name (POD_NAME)" }}
{{- end }}
{{- $client := get $kafka "client" | default dict }}
{{- range $key, $_v := $client }}
{{- $k := lower $key }}
{{- if or (contains "password" $k) (contains "secret" $k) (eq $k "ssl.key.pem") (eq $k "sasl.jaas.config") (eq $k "sasl.oauthbearer.config") }}
{{- fail (printf "config.kafka.client.%q is a credential and would end up in a ConfigMap: use kafka.sasl.existingSecret" $key) }}
{{- end }}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
{{- $_ = set $client "security.protocol" .Values.kafka.sasl.securityProtocol }}
{{- $_ = set $client "sasl.mechanism" .Values.kafka.sasl.mechanism }}
{{- with .Values.kafka.sasl.username }}
{{- $_ = set $client "sasl.username" . }}
{{- end }}
{{- end }}
{{- if .Values.kafka.caCertificate.existingSecret }}
{{- $_ = set $client "ssl.ca.location" (include "cxone-ingest.kafkaCaPath" .) }}
{{- if and (not .Values.kafka.sasl.enabled) (not (hasKey $client "security.protocol")) }}
{{- $_ = set $client "security.protocol" "SSL" }}
{{- end }}
{{- end }}
{{- if $client }}
{{- $_ = set $kafka "client" $client }}
{{- end }}
{{- if $kafka }}
{{- $_ = set $cfg "kafka" $kafka }}
{{- end }}
{{- $deadLetter := get $cfg "dead_letter" | default dict }}
{{- if hasKey $deadLetter "secret_access_key" }}
{{- fail "config.dead_letter.secret_access_key would end up in a ConfigMap: use deadLetter.credentials.existingSecret, or IRSA / workload identity (serviceAccount.annotations)" }}
{{- end }}
{{- $cxone := get $cfg "cxone" | default dict }}
{{- if hasKey $cxone "client_secret" }}
{{- fail "config.cxone.client_secret would end up in a ConfigMap: mount a Secret (extraVolumes) and set config.cxone.client_secret_file" }}
{{- end }}
{{- $dedupe := get $cfg "dedupe" | default dict }}
{{- if and .Values.dedupe.existingSecret (hasKey $dedupe "store") }}
{{- fail "config.dedupe.store and dedupe.existingSecret are both set: the store URL comes from the Secret (env CXONE_INGEST_DEDUPE_STORE); drop config.dedupe.store" }}
{{- end }}
{{- if and (hasKey $dedupe "store") (not (eq (toString $dedupe.store) "memory")) }}
{{- fail "config.dedupe.store names a Redis URL, which may hold a password and would end up in a ConfigMap: put the URL in a Secret and set dedupe.existingSecret (and dedupe.key)" }}
{{- end }}
{{- if .Values.dedupe.caCertificate.existingSecret }}
{{- if not .Values.dedupe.existingSecret }}
{{- fail "dedupe.caCertificate is for a rediss:// store: set dedupe.existingSecret (the Secret holding the rediss:// URL) too" }}
{{- end }}
{{- if hasKey $dedupe "ca_file" }}
{{- fail "config.dedupe.ca_file is set by the chart from dedupe.caCertificate: drop it from config" }}
{{- end }}
{{- $_ = set $dedupe "ca_file" (include "cxone-ingest.dedupeCaPath" .) }}
{{- $_ = set $cfg "dedupe" $dedupe }}
{{- end }}
{{- toJson $cfg }}
{{- end }}

{{/*
The dedupe store and replicas. A sender's retry may reach another replica; only a store shared by
every replica (a Redis/Valkey URL from dedupe.existingSecret, or env CXONE_INGEST_DEDUPE_STORE in
`env`) recognises it there. With the per-replica `memory` store such a retry is published twice,
so more than one replica (replicas, or autoscaling.maxReplicas) needs a shared store or the
explicit dedupe.acceptCrossReplicaDuplicates: true (which NOTES.txt then repeats as a warning).
*/}}
{{- define "cxone-ingest.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.maxReplicas }}{{ else }}{{ int .Values.replicas }}{{ end }}
{{- end }}

{{- define "cxone-ingest.dedupeShared" -}}
{{- $shared := false }}
{{- if .Values.dedupe.existingSecret }}{{ $shared = true }}{{ end }}
{{- range .Values.env }}
{{- if eq (toString .name) "CXONE_INGEST_DEDUPE_STORE" }}
{{- if or .valueFrom (hasPrefix "redis" (toString .value)) }}{{ $shared = true }}{{ end }}
{{- end }}
{{- end }}
{{- if $shared }}true{{ end }}
{{- end }}

{{/* Non-empty when the release runs several replicas on per-replica dedupe memory (accepted). */}}
{{- define "cxone-ingest.crossReplicaDuplicates" -}}
{{- if and (gt (int (include "cxone-ingest.maxReplicas" .)) 1) (not (include "cxone-ingest.dedupeShared" .)) }}
{{- if not .Values.dedupe.acceptCrossReplicaDuplicates }}
{{- $what := ternary (printf "autoscaling.maxReplicas is %d" (int .Values.autoscaling.maxReplicas)) (printf "replicas is %d" (int .Values.replicas)) .Values.autoscaling.enabled }}
{{- fail (printf "%s, but the dedupe store is per replica (memory): a CXone retry that reaches another replica would be published to Kafka twice. Put a shared Redis/Valkey URL (redis://user:password@host:6379/0 or rediss://...) in a Secret and set dedupe.existingSecret (and dedupe.key); or run one replica (replicas: 1); or accept the duplicates with dedupe.acceptCrossReplicaDuplicates: true" $what) }}
{{- end }}
{{- true }}
{{- end }}
{{- end }}

{{/*
TOML from a dict. Helm's own `toToml` writes every number from a values file as a float
(`max_in_flight = 1024.0`: values files are decoded into float64), which the service's integer
keys refuse. This writer prints whole numbers as integers, quotes keys that are not bare keys,
writes strings as JSON strings (a subset of TOML basic strings), skips nulls (TOML has none, and
`key: null` in a values file then means "leave the service default"), and writes nested maps
as [tables] (inside arrays: inline tables).
*/}}
{{- define "cxone-ingest.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "cxone-ingest.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ ternary "true" "false" $v }}
{{- else if kindIs "float64" $v }}
{{- if eq $v (floor $v) }}{{ int64 $v }}{{ else }}{{ toString $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) }}{{ $v }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}{{ if not (kindIs "invalid" .) }}{{ $items = append $items (include "cxone-ingest.tomlValue" .) }}{{ end }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else if kindIs "map" $v }}
{{- $items := list }}
{{- range $k, $item := $v }}{{ if not (kindIs "invalid" $item) }}{{ $items = append $items (printf "%s = %s" (include "cxone-ingest.tomlKey" $k) (include "cxone-ingest.tomlValue" $item)) }}{{ end }}{{ end }}
{{- printf "{ %s }" (join ", " $items) }}
{{- else }}
{{- fail (printf "cannot write %v (%s) as TOML" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* Argument: (list <dict> <list of the table's path segments>). */}}
{{- define "cxone-ingest.tomlTable" -}}
{{- $table := index . 0 }}
{{- $path := index . 1 }}
{{- range $k, $v := $table }}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{ include "cxone-ingest.tomlKey" $k }} = {{ include "cxone-ingest.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $table }}
{{- if kindIs "map" $v }}
{{- $sub := append $path (include "cxone-ingest.tomlKey" $k) }}

[{{ join "." $sub }}]
{{- include "cxone-ingest.tomlTable" (list $v $sub) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cxone-ingest.configToml" -}}
# Rendered by the cxone-ingest Helm chart from `config` (values) plus the keys the chart owns.
# Check it with: cxone-ingest config check --config <this file>
{{- include "cxone-ingest.tomlTable" (list (include "cxone-ingest.configDict" . | fromJson) list) }}
{{- end }}

{{/*
Where a source's Secret for one check is mounted: <sourcesMountPath>/<source>/<check>.
Argument: (list <root> <source name> <check>).
*/}}
{{- define "cxone-ingest.sourceMountPath" -}}
{{- $root := index . 0 }}
{{- printf "%s/%s/%s" $root.Values.sourcesMountPath (index . 1) (index . 2) }}
{{- end }}

{{/*
Event schemas from a ConfigMap (`schemas`): the ConfigMap's name, empty when the image's built-in
set is used. One of schemas.existingConfigMap and schemas.files; every file name ends in .json
(the service reads only those, so any other key would be silently ignored).
*/}}
{{- define "cxone-ingest.schemasConfigMap" -}}
{{- $s := .Values.schemas }}
{{- if and $s.existingConfigMap $s.files }}
{{- fail "schemas.existingConfigMap and schemas.files are both set: give the schema files in one of them" }}
{{- end }}
{{- range $name, $_ := $s.files }}
{{- if not (hasSuffix ".json" $name) }}
{{- fail (printf "schemas.files.%s: a schema file name must end in .json (the service reads only *.json)" $name) }}
{{- end }}
{{- end }}
{{- if $s.existingConfigMap }}{{ $s.existingConfigMap }}
{{- else if $s.files }}{{ printf "%s-schemas" (include "cxone-ingest.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Where a source's own schema folder is mounted. Argument: (list <root> <source name>). */}}
{{- define "cxone-ingest.sourceSchemasMountPath" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" $root.Values.schemas.mountPath (index . 1) }}
{{- end }}

{{/*
The key each check's Secret holds by default (one file per key).
*/}}
{{- define "cxone-ingest.sourceDefaultKey" -}}
{{- get (dict "signature" "secret" "bearer" "token" "basic" "credentials" "jwt" "key") . }}
{{- end }}

{{/*
`sources` (values) as the service's [[sources]] (JSON: {"sources": [...]}): names, paths, topics,
prefixes, and per check the mounted files of its Secret. No credential ever goes into the config.
*/}}
{{- define "cxone-ingest.sources" -}}
{{- $root := . }}
{{- $out := list }}
{{- range .Values.sources }}
{{- $source := . }}
{{- $s := dict "name" .name "path" .path }}
{{- with .topic }}{{ $_ := set $s "topic" . }}{{ end }}
{{- with .deadLetterPrefix }}{{ $_ := set $s "dead_letter_prefix" . }}{{ end }}
{{- with .schemasConfigMap }}{{ $_ := set $s "schemas_dir" (include "cxone-ingest.sourceSchemasMountPath" (list $root $source.name)) }}{{ end }}
{{- if hasKey . "deliveryIdHeader" }}{{ $_ := set $s "delivery_id_header" .deliveryIdHeader }}{{ end }}
{{- if hasKey . "eventTypeHeader" }}{{ $_ := set $s "event_type_header" .eventTypeHeader }}{{ end }}
{{- range $check := list "signature" "bearer" "basic" "jwt" }}
{{- with get $source $check }}
{{- if not .secretName }}
{{- fail (printf "sources[%s].%s needs secretName (the Secret holding its credentials, mounted as files)" $source.name $check) }}
{{- end }}
{{- $files := list }}
{{- range (.keys | default (list (include "cxone-ingest.sourceDefaultKey" $check))) }}
{{- $files = append $files (printf "%s/%s" (include "cxone-ingest.sourceMountPath" (list $root $source.name $check)) .) }}
{{- end }}
{{- $c := dict }}
{{- if eq $check "signature" }}
{{- $_ := set $c "secret_files" $files }}
{{- with .preset }}{{ $_ := set $c "preset" . }}{{ end }}
{{- else if eq $check "bearer" }}
{{- $_ := set $c "bearer_token_files" $files }}
{{- else if eq $check "basic" }}
{{- $_ := set $c "credential_files" $files }}
{{- else }}
{{- $_ := set $c "key_files" $files }}
{{- $_ := set $c "algorithm" (.algorithm | default "HS256") }}
{{- with .issuer }}{{ $_ := set $c "issuer" . }}{{ end }}
{{- with .audience }}{{ $_ := set $c "audience" . }}{{ end }}
{{- if hasKey . "leewaySecs" }}{{ $_ := set $c "leeway_secs" .leewaySecs }}{{ end }}
{{- end }}
{{- $_ := set $s $check $c }}
{{- end }}
{{- end }}
{{- $out = append $out $s }}
{{- end }}
{{- toJson (dict "sources" $out) }}
{{- end }}
