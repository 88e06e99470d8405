//! A kustomization's own transformers, in kustomize's order: the built-in fields, then the
//! `transformers:` plugin configurations.

use super::*;

impl Builder {
    /// Run the transformers of `k`. `builtin`: `k` is a kustomization (its fields are
    /// kustomize's built-in transformers, recorded as such for `transformerAnnotations`), not
    /// the stand-in for one built-in plugin configuration (recorded by the caller).
    pub(super) fn transform(
        &mut self,
        k: &Kustomization,
        dir: &Resolved,
        ra: &mut Vec<Resource>,
        cfg: &Extra,
        builtin: bool,
    ) -> Result<(), RenderError> {
        let configured_in = match (&self.track_transformers, builtin) {
            (Some(top), true) => Some(relative_to(&k.file, top)),
            _ => None,
        };
        let explain = self.explain;
        let note = |ra: &mut Vec<Resource>, kind: &str| {
            if let Some(c) = &configured_in {
                record_transformer(ra, c, "builtin", kind, "", "");
            }
            if explain && builtin {
                let field = match kind {
                    "PatchStrategicMergeTransformer" => "patchesStrategicMerge",
                    "PatchTransformer" => "patches",
                    "NamespaceTransformer" => "namespace",
                    "PrefixTransformer" => "namePrefix",
                    "SuffixTransformer" => "nameSuffix",
                    "LabelTransformer" => "labels/commonLabels",
                    "AnnotationsTransformer" => "commonAnnotations",
                    "PatchJson6902Transformer" => "patchesJson6902",
                    "ReplicaCountTransformer" => "replicas",
                    "ImageTagTransformer" => "images",
                    "ReplacementTransformer" => "replacements",
                    other => other,
                };
                explain::step(ra, &format!("{} {field}", k.file.display()));
            }
        };
        if explain && builtin {
            explain::step(ra, "");
        }
        // patchesStrategicMerge (legacy)
        for entry in &k.patches_strategic_merge {
            let at = Location::at(&k.file, entry.line);
            let patches = match inline_patches(&entry.value) {
                Some(p) => p,
                None => {
                    let r = self.loader.resolve(
                        &dir.abs,
                        &entry.value,
                        &at,
                        "patchesStrategicMerge",
                        false,
                    )?;
                    let text = self.loader.read_text(&r, &at)?;
                    parse_smp(&text, &Location::file(&r.rel))?
                }
            };
            let mut index = name_index(ra);
            for p in patches {
                apply_untargeted(
                    self.openapi.as_deref(),
                    ra,
                    &mut index,
                    &p,
                    &at,
                    false,
                    false,
                )?;
            }
            ra.retain(|r| !r.is_empty());
        }
        if !k.patches_strategic_merge.is_empty() {
            note(ra, "PatchStrategicMergeTransformer");
        }
        // patches
        for p in &k.patches {
            self.apply_patch(k, dir, ra, p, "patches")?;
            note(ra, "PatchTransformer");
        }
        if !k.namespace.is_empty() {
            let n = transform::Namespacing {
                namespace: k.namespace.clone(),
                specs: cfg.namespace.clone(),
                ..Default::default()
            };
            transform::namespace(ra, &n, &k.file)?;
            note(ra, "NamespaceTransformer");
        }
        if !k.name_prefix.is_empty() {
            transform::affix(ra, &k.name_prefix, true, &cfg.name_prefix)?;
            note(ra, "PrefixTransformer");
        }
        if !k.name_suffix.is_empty() {
            transform::affix(ra, &k.name_suffix, false, &cfg.name_suffix)?;
            note(ra, "SuffixTransformer");
        }
        transform::labels(
            ra,
            k,
            transform::LabelTables {
                common: &cfg.common_labels,
                labels: &cfg.labels,
                templates: &cfg.template_labels,
            },
        )?;
        // kustomize runs one label transformer per `labels` entry and one for `commonLabels`.
        if !k.labels.is_empty() || !k.common_labels.is_empty() {
            for _ in 0..=k.labels.len() {
                note(ra, "LabelTransformer");
            }
        }
        transform::annotations(ra, k, &cfg.common_annotations)?;
        if !k.common_annotations.is_empty() {
            note(ra, "AnnotationsTransformer");
        }
        for p in &k.patches_json6902 {
            self.apply_patch(k, dir, ra, p, "patchesJson6902")?;
            note(ra, "PatchJson6902Transformer");
        }
        if !k.replicas.is_empty() {
            transform::replicas(ra, &k.replicas, &cfg.replicas, &k.file)?;
            for _ in &k.replicas {
                note(ra, "ReplicaCountTransformer");
            }
        }
        transform::images(ra, k, &cfg.images)?;
        for _ in &k.images {
            note(ra, "ImageTagTransformer");
        }
        if !k.replacements.is_empty() {
            let loader = &mut self.loader;
            let reps = replace::collect(&k.replacements, |path, line| {
                let at = Location::at(&k.file, line);
                let r = loader.resolve(&dir.abs, path, &at, "replacements.path", false)?;
                let text = loader.read_text(&r, &at)?;
                Ok((text.to_string(), r.rel))
            })?;
            replace::apply(ra, &reps)?;
            note(ra, "ReplacementTransformer");
        }
        for entry in plugins::in_kustomize_order(&k.transformers) {
            for plugin in self.load_plugins(k, dir, entry, "transformers")? {
                match &plugin.config {
                    plugins::Config::Transform(kk) => self.transform(kk, dir, ra, cfg, false)?,
                    plugins::Config::SetEntries {
                        specs,
                        entries,
                        what,
                    } => transform::set_map_entries(ra, specs, entries, what)?,
                    plugins::Config::PrefixSuffix {
                        prefix,
                        suffix,
                        specs,
                    } => {
                        if let Some(prefix) = prefix {
                            transform::affix(ra, prefix, true, specs)?;
                        }
                        if let Some(suffix) = suffix {
                            transform::affix(ra, suffix, false, specs)?;
                        }
                    }
                    plugins::Config::Namespace(n) => transform::namespace(ra, n, &plugin.at.file)?,
                    plugins::Config::Replicas { replica, specs } => transform::replicas(
                        ra,
                        std::slice::from_ref(replica),
                        specs,
                        &plugin.at.file,
                    )?,
                    plugins::Config::Images { image, specs } => {
                        let mut kk = Kustomization::empty(&plugin.at.file);
                        kk.images.push(image.clone());
                        transform::images(ra, &kk, specs)?;
                    }
                    plugins::Config::Hash => add_hashes(ra),
                    plugins::Config::ValueAdd {
                        value,
                        targets,
                        target_file,
                    } => {
                        let mut targets = targets.clone();
                        if let Some(f) = target_file {
                            let r = self.loader.resolve(
                                &dir.abs,
                                f,
                                &plugin.at,
                                "ValueAddTransformer.targetFilePath",
                                false,
                            )?;
                            let text = self.loader.read_text(&r, &plugin.at)?;
                            let doc = value::parse_stream(&text)
                                .ok()
                                .and_then(|d| d.into_iter().find(|d| !d.is_null()))
                                .and_then(|d| d.to_value(Dialect::Kyaml).ok())
                                .unwrap_or(Value::Null);
                            targets.extend(plugins::value_targets(
                                doc.get("targets"),
                                &Location::file(&r.rel),
                            )?);
                        }
                        let value = if value.is_empty() {
                            dir.abs
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        } else {
                            value.clone()
                        };
                        for t in &targets {
                            let sel = match &t.selector {
                                Some(s) => Some(Selector::new(s).map_err(|e| {
                                    RenderError::invalid(
                                        plugin.at.clone(),
                                        "ValueAddTransformer.targets.selector",
                                        e,
                                    )
                                })?),
                                None => None,
                            };
                            for r in ra.iter_mut().filter(|r| !r.is_empty()) {
                                if sel.as_ref().is_some_and(|s| !s.matches(r)) {
                                    continue;
                                }
                                if t.field_path == "metadata/namespace" {
                                    let n = transform::Namespacing {
                                        namespace: value.clone(),
                                        ..Default::default()
                                    };
                                    transform::namespace(
                                        std::slice::from_mut(r),
                                        &n,
                                        &plugin.at.file,
                                    )?;
                                } else {
                                    transform::value_add(
                                        r,
                                        &value,
                                        &t.field_path,
                                        t.file_path_position,
                                    )?;
                                }
                            }
                        }
                    }
                    plugins::Config::Generate(_)
                    | plugins::Config::Objects(_)
                    | plugins::Config::Helm(_) => {}
                }
                if let Some(top) = &self.track_transformers {
                    let (kind, name, namespace) = &plugin.id;
                    let c = relative_to(&plugin.at.file, top);
                    record_transformer(ra, &c, "builtin", kind, name, namespace);
                }
                if self.explain {
                    let (kind, name, _) = &plugin.id;
                    explain::step(ra, &format!("{} transformers: {kind}/{name}", plugin.at));
                }
            }
        }
        Ok(())
    }
}
