{{/*
The extra rule of rbac.bindAndEscalate: baton may create Roles granting permissions it does
not hold itself (escalate) and bind roles it does not hold (bind).
*/}}
{{- define "baton.bindAndEscalate" -}}
{{- if .Values.rbac.bindAndEscalate }}
  - apiGroups: ["rbac.authorization.k8s.io"]
    resources: ["roles", "clusterroles"]
    verbs: ["bind", "escalate"]
{{- end }}
{{- end }}
