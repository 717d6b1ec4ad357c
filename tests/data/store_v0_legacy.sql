BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('v3.2.0.a');
CREATE TABLE studies (
	study_id INTEGER NOT NULL, 
	study_name VARCHAR(512) NOT NULL, 
	PRIMARY KEY (study_id)
);
INSERT INTO "studies" VALUES(1,'legacy_tpe');
CREATE TABLE study_directions (
	study_direction_id INTEGER NOT NULL, 
	direction VARCHAR(8) NOT NULL, 
	study_id INTEGER NOT NULL, 
	objective INTEGER NOT NULL, 
	PRIMARY KEY (study_direction_id), 
	UNIQUE (study_id, objective), 
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
INSERT INTO "study_directions" VALUES(1,'MINIMIZE',1,0);
CREATE TABLE study_system_attributes (
	study_system_attribute_id INTEGER NOT NULL, 
	study_id INTEGER, 
	"key" VARCHAR(512), 
	value_json TEXT, 
	PRIMARY KEY (study_system_attribute_id), 
	UNIQUE (study_id, "key"), 
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE study_user_attributes (
	study_user_attribute_id INTEGER NOT NULL, 
	study_id INTEGER, 
	"key" VARCHAR(512), 
	value_json TEXT, 
	PRIMARY KEY (study_user_attribute_id), 
	UNIQUE (study_id, "key"), 
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE trial_heartbeats (
	trial_heartbeat_id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	heartbeat DATETIME NOT NULL, 
	PRIMARY KEY (trial_heartbeat_id), 
	UNIQUE (trial_id), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_intermediate_values (
	trial_intermediate_value_id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	step INTEGER NOT NULL, 
	intermediate_value FLOAT, 
	intermediate_value_type VARCHAR(7) NOT NULL, 
	PRIMARY KEY (trial_intermediate_value_id), 
	UNIQUE (trial_id, step), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_params (
	param_id INTEGER NOT NULL, 
	trial_id INTEGER, 
	param_name VARCHAR(512), 
	param_value FLOAT, 
	distribution_json TEXT, 
	PRIMARY KEY (param_id), 
	UNIQUE (trial_id, param_name), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
INSERT INTO "trial_params" VALUES(1,1,'eps',1.32322025589098712927e+00,'{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.5, "high": 2.0, "log": false}}');
INSERT INTO "trial_params" VALUES(2,2,'eps',1.57278404955862916025e+00,'{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.5, "high": 2.0, "log": false}}');
CREATE TABLE trial_system_attributes (
	trial_system_attribute_id INTEGER NOT NULL, 
	trial_id INTEGER, 
	"key" VARCHAR(512), 
	value_json TEXT, 
	PRIMARY KEY (trial_system_attribute_id), 
	UNIQUE (trial_id, "key"), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_user_attributes (
	trial_user_attribute_id INTEGER NOT NULL, 
	trial_id INTEGER, 
	"key" VARCHAR(512), 
	value_json TEXT, 
	PRIMARY KEY (trial_user_attribute_id), 
	UNIQUE (trial_id, "key"), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_values (
	trial_value_id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	objective INTEGER NOT NULL, 
	value FLOAT, 
	value_type VARCHAR(7) NOT NULL, 
	PRIMARY KEY (trial_value_id), 
	UNIQUE (trial_id, objective), 
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
INSERT INTO "trial_values" VALUES(1,1,0,0.803088803088803,'FINITE');
INSERT INTO "trial_values" VALUES(2,2,0,7.99227799227799184933e-01,'FINITE');
CREATE TABLE trials (
	trial_id INTEGER NOT NULL, 
	number INTEGER, 
	study_id INTEGER, 
	state VARCHAR(8) NOT NULL, 
	datetime_start DATETIME, 
	datetime_complete DATETIME, 
	PRIMARY KEY (trial_id), 
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
INSERT INTO "trials" VALUES(1,0,1,'COMPLETE','2026-11-26 06:56:09.595010','2026-11-26 06:56:09.660108');
INSERT INTO "trials" VALUES(2,1,1,'COMPLETE','2026-11-26 06:56:09.670692','2026-11-26 06:56:09.716637');
CREATE TABLE vat_final_metrics (
	id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	value FLOAT, 
	CONSTRAINT pk_vat_final_metrics PRIMARY KEY (id), 
	CONSTRAINT uq_vat_final_metrics_trial_name UNIQUE (trial_id, name), 
	CONSTRAINT fk_vat_final_metrics_trial_id_vat_trials FOREIGN KEY(trial_id) REFERENCES vat_trials (id) ON DELETE CASCADE
);
INSERT INTO "vat_final_metrics" VALUES(1,1,'loss',2.62105417251586914062e+00);
INSERT INTO "vat_final_metrics" VALUES(2,1,'nll',2.62105417251586914062e+00);
INSERT INTO "vat_final_metrics" VALUES(3,1,'reg',0.0);
INSERT INTO "vat_final_metrics" VALUES(4,1,'lr',0.002);
INSERT INTO "vat_final_metrics" VALUES(5,1,'val_error',0.803088803088803);
INSERT INTO "vat_final_metrics" VALUES(6,1,'rvadv',0.0459956693649292);
INSERT INTO "vat_final_metrics" VALUES(7,1,'train_seconds',1.11340379999091965146e-02);
INSERT INTO "vat_final_metrics" VALUES(8,1,'test_error',0.818);
INSERT INTO "vat_final_metrics" VALUES(9,1,'steps',6.0);
INSERT INTO "vat_final_metrics" VALUES(10,1,'wall_seconds',2.04888301599999067548e+00);
INSERT INTO "vat_final_metrics" VALUES(11,1,'n_labeled',100.0);
INSERT INTO "vat_final_metrics" VALUES(12,1,'n_validation',259.0);
INSERT INTO "vat_final_metrics" VALUES(13,2,'loss',2.90780774752298976082e+00);
INSERT INTO "vat_final_metrics" VALUES(14,2,'nll',2.63630922635396336417e+00);
INSERT INTO "vat_final_metrics" VALUES(15,2,'reg',2.71498516201972961425e-01);
INSERT INTO "vat_final_metrics" VALUES(16,2,'lr',0.002);
INSERT INTO "vat_final_metrics" VALUES(17,2,'val_error',0.803088803088803);
INSERT INTO "vat_final_metrics" VALUES(18,2,'rvadv',4.35871982574462871196e-02);
INSERT INTO "vat_final_metrics" VALUES(19,2,'train_seconds',1.4256391000003532099e-02);
INSERT INTO "vat_final_metrics" VALUES(20,2,'test_error',0.812);
INSERT INTO "vat_final_metrics" VALUES(21,2,'steps',6.0);
INSERT INTO "vat_final_metrics" VALUES(22,2,'wall_seconds',3.09149529999785954714e-02);
INSERT INTO "vat_final_metrics" VALUES(23,2,'n_labeled',100.0);
INSERT INTO "vat_final_metrics" VALUES(24,2,'n_validation',259.0);
INSERT INTO "vat_final_metrics" VALUES(25,3,'loss',3.04408756891886378426e+00);
INSERT INTO "vat_final_metrics" VALUES(26,3,'nll',2.62958137194315577644e+00);
INSERT INTO "vat_final_metrics" VALUES(27,3,'reg',4.14506246646245302134e-01);
INSERT INTO "vat_final_metrics" VALUES(28,3,'lr',0.002);
INSERT INTO "vat_final_metrics" VALUES(29,3,'val_error',0.806949806949807);
INSERT INTO "vat_final_metrics" VALUES(30,3,'rvadv',4.29666900634765591693e-02);
INSERT INTO "vat_final_metrics" VALUES(31,3,'train_seconds',1.32765539999581960728e-02);
INSERT INTO "vat_final_metrics" VALUES(32,3,'test_error',0.818);
INSERT INTO "vat_final_metrics" VALUES(33,3,'steps',6.0);
INSERT INTO "vat_final_metrics" VALUES(34,3,'wall_seconds',2.78100310000013450917e-02);
INSERT INTO "vat_final_metrics" VALUES(35,3,'n_labeled',100.0);
INSERT INTO "vat_final_metrics" VALUES(36,3,'n_validation',259.0);
INSERT INTO "vat_final_metrics" VALUES(37,5,'loss',3.08950877189636230468e+00);
INSERT INTO "vat_final_metrics" VALUES(38,5,'nll',2.62982320785522460937e+00);
INSERT INTO "vat_final_metrics" VALUES(39,5,'reg',4.59685564041137695312e-01);
INSERT INTO "vat_final_metrics" VALUES(40,5,'lr',0.002);
INSERT INTO "vat_final_metrics" VALUES(41,5,'val_error',0.803088803088803);
INSERT INTO "vat_final_metrics" VALUES(42,5,'rvadv',4.39046812057495086656e-02);
INSERT INTO "vat_final_metrics" VALUES(43,5,'train_seconds',1.67857489998937126074e-02);
INSERT INTO "vat_final_metrics" VALUES(44,5,'test_error',0.82);
INSERT INTO "vat_final_metrics" VALUES(45,5,'steps',6.0);
INSERT INTO "vat_final_metrics" VALUES(46,5,'wall_seconds',3.40422449999664422648e-02);
INSERT INTO "vat_final_metrics" VALUES(47,5,'n_labeled',100.0);
INSERT INTO "vat_final_metrics" VALUES(48,5,'n_validation',259.0);
INSERT INTO "vat_final_metrics" VALUES(49,6,'loss',3.11249462763468409676e+00);
INSERT INTO "vat_final_metrics" VALUES(50,6,'nll',2.62927762667338038582e+00);
INSERT INTO "vat_final_metrics" VALUES(51,6,'reg',4.83216961224873842173e-01);
INSERT INTO "vat_final_metrics" VALUES(52,6,'lr',0.002);
INSERT INTO "vat_final_metrics" VALUES(53,6,'val_error',7.99227799227799184933e-01);
INSERT INTO "vat_final_metrics" VALUES(54,6,'rvadv',4.42912578582763671875e-02);
INSERT INTO "vat_final_metrics" VALUES(55,6,'train_seconds',1.41684769999983473098e-02);
INSERT INTO "vat_final_metrics" VALUES(56,6,'test_error',0.824);
INSERT INTO "vat_final_metrics" VALUES(57,6,'steps',6.0);
INSERT INTO "vat_final_metrics" VALUES(58,6,'wall_seconds',2.9855084000018905499e-02);
INSERT INTO "vat_final_metrics" VALUES(59,6,'n_labeled',100.0);
INSERT INTO "vat_final_metrics" VALUES(60,6,'n_validation',259.0);
CREATE TABLE vat_metrics (
	id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	step INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	value FLOAT, 
	CONSTRAINT pk_vat_metrics PRIMARY KEY (id), 
	CONSTRAINT uq_vat_metrics_trial_step_name UNIQUE (trial_id, step, name), 
	CONSTRAINT fk_vat_metrics_trial_id_vat_trials FOREIGN KEY(trial_id) REFERENCES vat_trials (id) ON DELETE CASCADE
);
INSERT INTO "vat_metrics" VALUES(1,1,3,'loss',2.93412597974141453605e+00);
INSERT INTO "vat_metrics" VALUES(2,1,3,'nll',2.93412597974141453605e+00);
INSERT INTO "vat_metrics" VALUES(3,1,3,'reg',0.0);
INSERT INTO "vat_metrics" VALUES(4,1,3,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(5,1,3,'val_error',8.18532818532818562395e-01);
INSERT INTO "vat_metrics" VALUES(6,1,3,'rvadv',2.87199425697326655992e-02);
INSERT INTO "vat_metrics" VALUES(7,1,3,'train_seconds',8.04751399994074745336e-03);
INSERT INTO "vat_metrics" VALUES(8,1,6,'loss',2.62105417251586914062e+00);
INSERT INTO "vat_metrics" VALUES(9,1,6,'nll',2.62105417251586914062e+00);
INSERT INTO "vat_metrics" VALUES(10,1,6,'reg',0.0);
INSERT INTO "vat_metrics" VALUES(11,1,6,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(12,1,6,'val_error',0.803088803088803);
INSERT INTO "vat_metrics" VALUES(13,1,6,'rvadv',0.0459956693649292);
INSERT INTO "vat_metrics" VALUES(14,1,6,'train_seconds',1.11340379999091965146e-02);
INSERT INTO "vat_metrics" VALUES(15,2,3,'loss',3.17181054751078272957e+00);
INSERT INTO "vat_metrics" VALUES(16,2,3,'nll',2.93257617950439453125e+00);
INSERT INTO "vat_metrics" VALUES(17,2,3,'reg',2.39234457413355500188e-01);
INSERT INTO "vat_metrics" VALUES(18,2,3,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(19,2,3,'val_error',8.18532818532818562395e-01);
INSERT INTO "vat_metrics" VALUES(20,2,3,'rvadv',2.72267436981201184365e-02);
INSERT INTO "vat_metrics" VALUES(21,2,3,'train_seconds',7.90758400000868277857e-03);
INSERT INTO "vat_metrics" VALUES(22,2,6,'loss',2.90780774752298976082e+00);
INSERT INTO "vat_metrics" VALUES(23,2,6,'nll',2.63630922635396336417e+00);
INSERT INTO "vat_metrics" VALUES(24,2,6,'reg',2.71498516201972961425e-01);
INSERT INTO "vat_metrics" VALUES(25,2,6,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(26,2,6,'val_error',0.803088803088803);
INSERT INTO "vat_metrics" VALUES(27,2,6,'rvadv',4.35871982574462871196e-02);
INSERT INTO "vat_metrics" VALUES(28,2,6,'train_seconds',1.4256391000003532099e-02);
INSERT INTO "vat_metrics" VALUES(29,3,3,'loss',3.29273700714111328125e+00);
INSERT INTO "vat_metrics" VALUES(30,3,3,'nll',2.9320154984792075048e+00);
INSERT INTO "vat_metrics" VALUES(31,3,3,'reg',3.60721548398335756235e-01);
INSERT INTO "vat_metrics" VALUES(32,3,3,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(33,3,3,'val_error',8.22393822393822415683e-01);
INSERT INTO "vat_metrics" VALUES(34,3,3,'rvadv',2.76195859909057622738e-02);
INSERT INTO "vat_metrics" VALUES(35,3,3,'train_seconds',7.08465400003888134961e-03);
INSERT INTO "vat_metrics" VALUES(36,3,6,'loss',3.04408756891886378426e+00);
INSERT INTO "vat_metrics" VALUES(37,3,6,'nll',2.62958137194315577644e+00);
INSERT INTO "vat_metrics" VALUES(38,3,6,'reg',4.14506246646245302134e-01);
INSERT INTO "vat_metrics" VALUES(39,3,6,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(40,3,6,'val_error',0.806949806949807);
INSERT INTO "vat_metrics" VALUES(41,3,6,'rvadv',4.29666900634765591693e-02);
INSERT INTO "vat_metrics" VALUES(42,3,6,'train_seconds',1.32765539999581960728e-02);
INSERT INTO "vat_metrics" VALUES(43,5,3,'loss',3.33648292223612452644e+00);
INSERT INTO "vat_metrics" VALUES(44,5,3,'nll',2.93183906873067234855e+00);
INSERT INTO "vat_metrics" VALUES(45,5,3,'reg',4.04643833637237548828e-01);
INSERT INTO "vat_metrics" VALUES(46,5,3,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(47,5,3,'val_error',8.18532818532818562395e-01);
INSERT INTO "vat_metrics" VALUES(48,5,3,'rvadv',2.80435681343078613281e-02);
INSERT INTO "vat_metrics" VALUES(49,5,3,'train_seconds',9.14129999989654606906e-03);
INSERT INTO "vat_metrics" VALUES(50,5,6,'loss',3.08950877189636230468e+00);
INSERT INTO "vat_metrics" VALUES(51,5,6,'nll',2.62982320785522460937e+00);
INSERT INTO "vat_metrics" VALUES(52,5,6,'reg',4.59685564041137695312e-01);
INSERT INTO "vat_metrics" VALUES(53,5,6,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(54,5,6,'val_error',0.803088803088803);
INSERT INTO "vat_metrics" VALUES(55,5,6,'rvadv',4.39046812057495086656e-02);
INSERT INTO "vat_metrics" VALUES(56,5,6,'train_seconds',1.67857489998937126074e-02);
INSERT INTO "vat_metrics" VALUES(57,6,3,'loss',3.3586779435475668798e+00);
INSERT INTO "vat_metrics" VALUES(58,6,3,'nll',2.93133513132731104988e+00);
INSERT INTO "vat_metrics" VALUES(59,6,3,'reg',4.2734279235204059022e-01);
INSERT INTO "vat_metrics" VALUES(60,6,3,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(61,6,3,'val_error',8.14671814671814709107e-01);
INSERT INTO "vat_metrics" VALUES(62,6,3,'rvadv',2.7911572456359862171e-02);
INSERT INTO "vat_metrics" VALUES(63,6,3,'train_seconds',7.64457200000379089033e-03);
INSERT INTO "vat_metrics" VALUES(64,6,6,'loss',3.11249462763468409676e+00);
INSERT INTO "vat_metrics" VALUES(65,6,6,'nll',2.62927762667338038582e+00);
INSERT INTO "vat_metrics" VALUES(66,6,6,'reg',4.83216961224873842173e-01);
INSERT INTO "vat_metrics" VALUES(67,6,6,'lr',0.002);
INSERT INTO "vat_metrics" VALUES(68,6,6,'val_error',7.99227799227799184933e-01);
INSERT INTO "vat_metrics" VALUES(69,6,6,'rvadv',4.42912578582763671875e-02);
INSERT INTO "vat_metrics" VALUES(70,6,6,'train_seconds',1.41684769999983473098e-02);
INSERT INTO "vat_metrics" VALUES(71,7,3,'val_error',0.5);
CREATE TABLE vat_studies (
	id INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	spec JSON NOT NULL, 
	spec_path TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_vat_studies PRIMARY KEY (id), 
	CONSTRAINT uq_vat_studies_name UNIQUE (name)
);
INSERT INTO "vat_studies" VALUES(1,'legacy_grid','{"name": "legacy_grid", "description": null, "task": {"dataset": "digits", "hidden": [16], "steps": 6, "eval_every": 3, "batch": {"labeled": 16, "unlabeled": 32}, "data_root": "/tmp/legacy/empty"}, "method": {"name": "vat"}, "search": {"grid": [{"method": ["baseline"]}, {"method": ["vat"], "eps": [0.5, 1.0]}, {"dataset": ["mnist"]}], "optuna": null}, "seeds": [0], "metric": {"name": "val_error", "mode": "min"}, "probes": {"rvadv": {"size": 50}}, "executor": {"kind": "local", "per_trial": {"cpu": 1.0, "gpu": 0.0}, "max_concurrent": null, "address": null}, "storage": "sqlite:////tmp/legacy/old.db", "save_models": false, "models_dir": null}',NULL,'2026-11-26 06:56:07.085176','2026-11-26 06:56:07.085182');
INSERT INTO "vat_studies" VALUES(2,'legacy_tpe','{"name": "legacy_tpe", "description": null, "task": {"dataset": "digits", "hidden": [16], "steps": 6, "eval_every": 3, "batch": {"labeled": 16, "unlabeled": 32}}, "method": {"name": "vat"}, "search": {"grid": null, "optuna": {"sampler": "random", "n_trials": 2, "seed": 0, "space": {"eps": {"type": "uniform", "low": 0.5, "high": 2.0, "step": null, "log": false, "choices": null}}}}, "seeds": [0], "metric": {"name": "val_error", "mode": "min"}, "probes": {"rvadv": {"size": 50}}, "executor": {"kind": "local", "per_trial": {"cpu": 1.0, "gpu": 0.0}, "max_concurrent": null, "address": null}, "storage": "sqlite:////tmp/legacy/old.db", "save_models": false, "models_dir": null}',NULL,'2026-11-26 06:56:09.342687','2026-11-26 06:56:09.342692');
CREATE TABLE vat_trials (
	id INTEGER NOT NULL, 
	study_id INTEGER NOT NULL, 
	"key" VARCHAR(64) NOT NULL, 
	config_key VARCHAR(64) NOT NULL, 
	params JSON NOT NULL, 
	seed INTEGER NOT NULL, 
	config JSON NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	error TEXT, 
	attempts INTEGER NOT NULL, 
	optuna_number INTEGER, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	host VARCHAR(255) NOT NULL, 
	versions JSON NOT NULL, 
	CONSTRAINT pk_vat_trials PRIMARY KEY (id), 
	CONSTRAINT uq_vat_trials_study_key UNIQUE (study_id, "key"), 
	CONSTRAINT fk_vat_trials_study_id_vat_studies FOREIGN KEY(study_id) REFERENCES vat_studies (id) ON DELETE CASCADE
);
INSERT INTO "vat_trials" VALUES(1,1,'5baa07a4ac919d20','63fa90cecf7369d3','{"method": "baseline"}',0,'{"dataset": "digits", "data_root": "/tmp/legacy/empty", "download": false, "idx_paths": null, "mode": "semi_supervised", "n_labeled": 100, "validation": null, "zca": false, "augment": {"translate": 0, "flip": false}, "model": "mlp", "hidden": [16], "noise_sigma": 0.0, "top_bn": true, "dropout": 0.5, "method": "baseline", "eps": 1.0, "alpha": 1.0, "xi": 0.01, "power_iterations": 1, "direction": "finite_difference", "seed": 0, "steps": 6, "batch": {"labeled": 16, "unlabeled": 32}, "optimizer": {"name": "adam", "lr": 0.002, "beta1": 0.9, "beta2": 0.999, "decay": {"kind": "exponential", "every": 600, "rate": 0.9, "start": null, "beta1_after": null}}, "eval_every": 3, "probes": {"rvadv": {"eps": 2.0, "power_iterations": 1, "size": 50, "every": null}, "grad_variance": null, "fidelity": null}, "model_path": null, "device": "cpu", "dtype": "float32"}','COMPLETE',NULL,1,NULL,'2026-11-26 06:56:07.090849','2026-11-26 06:56:09.148605','vm','{"python": "3.11.7", "vat-study": "0.1.0", "torch": "2.14.1", "numpy": "2.4.6", "ray": "2.60.0", "optuna": "5.0.0", "sqlalchemy": "2.1.9"}');
INSERT INTO "vat_trials" VALUES(2,1,'59276f7ef188249d','af81ded192f28b5c','{"method": "vat", "eps": 0.5}',0,'{"dataset": "digits", "data_root": "/tmp/legacy/empty", "download": false, "idx_paths": null, "mode": "semi_supervised", "n_labeled": 100, "validation": null, "zca": false, "augment": {"translate": 0, "flip": false}, "model": "mlp", "hidden": [16], "noise_sigma": 0.0, "top_bn": true, "dropout": 0.5, "method": "vat", "eps": 0.5, "alpha": 1.0, "xi": 0.01, "power_iterations": 1, "direction": "finite_difference", "seed": 0, "steps": 6, "batch": {"labeled": 16, "unlabeled": 32}, "optimizer": {"name": "adam", "lr": 0.002, "beta1": 0.9, "beta2": 0.999, "decay": {"kind": "exponential", "every": 600, "rate": 0.9, "start": null, "beta1_after": null}}, "eval_every": 3, "probes": {"rvadv": {"eps": 2.0, "power_iterations": 1, "size": 50, "every": null}, "grad_variance": null, "fidelity": null}, "model_path": null, "device": "cpu", "dtype": "float32"}','COMPLETE',NULL,1,NULL,'2026-11-26 06:56:09.150573','2026-11-26 06:56:09.188301','vm','{"python": "3.11.7", "vat-study": "0.1.0", "torch": "2.14.1", "numpy": "2.4.6", "ray": "2.60.0", "optuna": "5.0.0", "sqlalchemy": "2.1.9"}');
INSERT INTO "vat_trials" VALUES(3,1,'cba88a57ba050217','cce0c8c6d2d858b7','{"method": "vat", "eps": 1.0}',0,'{"dataset": "digits", "data_root": "/tmp/legacy/empty", "download": false, "idx_paths": null, "mode": "semi_supervised", "n_labeled": 100, "validation": null, "zca": false, "augment": {"translate": 0, "flip": false}, "model": "mlp", "hidden": [16], "noise_sigma": 0.0, "top_bn": true, "dropout": 0.5, "method": "vat", "eps": 1.0, "alpha": 1.0, "xi": 0.01, "power_iterations": 1, "direction": "finite_difference", "seed": 0, "steps": 6, "batch": {"labeled": 16, "unlabeled": 32}, "optimizer": {"name": "adam", "lr": 0.002, "beta1": 0.9, "beta2": 0.999, "decay": {"kind": "exponential", "every": 600, "rate": 0.9, "start": null, "beta1_after": null}}, "eval_every": 3, "probes": {"rvadv": {"eps": 2.0, "power_iterations": 1, "size": 50, "every": null}, "grad_variance": null, "fidelity": null}, "model_path": null, "device": "cpu", "dtype": "float32"}','COMPLETE',NULL,1,NULL,'2026-11-26 06:56:09.189547','2026-11-26 06:56:09.223110','vm','{"python": "3.11.7", "vat-study": "0.1.0", "torch": "2.14.1", "numpy": "2.4.6", "ray": "2.60.0", "optuna": "5.0.0", "sqlalchemy": "2.1.9"}');
INSERT INTO "vat_trials" VALUES(4,1,'936d3d20f77f5941','c365b0ae18855fee','{"dataset": "mnist"}',0,'{"dataset": "mnist", "data_root": "/tmp/legacy/empty", "download": false, "idx_paths": null, "mode": "semi_supervised", "n_labeled": 100, "validation": null, "zca": false, "augment": {"translate": 0, "flip": false}, "model": "mlp", "hidden": [16], "noise_sigma": 0.0, "top_bn": true, "dropout": 0.5, "method": "vat", "eps": 1.0, "alpha": 1.0, "xi": 0.01, "power_iterations": 1, "direction": "finite_difference", "seed": 0, "steps": 6, "batch": {"labeled": 16, "unlabeled": 32}, "optimizer": {"name": "adam", "lr": 0.002, "beta1": 0.9, "beta2": 0.999, "decay": {"kind": "exponential", "every": 600, "rate": 0.9, "start": null, "beta1_after": null}}, "eval_every": 3, "probes": {"rvadv": {"eps": 2.0, "power_iterations": 1, "size": 50, "every": null}, "grad_variance": null, "fidelity": null}, "model_path": null, "device": "cpu", "dtype": "float32"}','FAILED','Traceback (most recent call last):
  File "/opt/vat-study/vat_study/executors/common.py", line 93, in execute_trial
    metrics = run_trial(t.config, report)
              ^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/vat-study/vat_study/objective.py", line 59, in run_trial
    prepared = prepare_data(cfg, device)
               ^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/vat-study/vat_study/objective.py", line 102, in prepare_data
    raise ConfigError([str(e)]) from None
vat_study.config.ConfigError: invalid trial config:
  - dataset ''mnist'' not found under data_root=''/tmp/legacy/empty'' (download is false: set download: true, or put the files there): Dataset not found. You can use download=True to download it
',1,NULL,'2026-11-26 06:56:09.224421','2026-11-26 06:56:09.336577','vm','{"python": "3.11.7", "vat-study": "0.1.0", "torch": "2.14.1", "numpy": "2.4.6", "ray": "2.60.0", "optuna": "5.0.0", "sqlalchemy": "2.1.9"}');
INSERT INTO "vat_trials" VALUES(5,2,'8752010a1e10a125','7c93b4427f91da06','{"eps": 1.3232202558909871}',0,'{"dataset": "digits", "data_root": null, "download": false, "idx_paths": null, "mode": "semi_supervised", "n_labeled": 100, "validation": null, "zca": false, "augment": {"translate": 0, "flip": false}, "model": "mlp", "hidden": [16], "noise_sigma": 0.0, "top_bn": true, "dropout": 0.5, "method": "vat", "eps": 1.3232202558909871, "alpha": 1.0, "xi": 0.01, "power_iterations": 1, "direction": "finite_difference", "seed": 0, "steps": 6, "batch": {"labeled": 16, "unlabeled": 32}, "optimizer": {"name": "adam", "lr": 0.002, "beta1": 0.9, "beta2": 0.999, "decay": {"kind": "exponential", "every": 600, "rate": 0.9, "start": null, "beta1_after": null}}, "eval_every": 3, "probes": {"rvadv": {"eps": 2.0, "power_iterations": 1, "size": 50, "every": null}, "grad_variance": null, "fidelity": null}, "model_path": null, "device": "cpu", "dtype": "float32"}','COMPLETE',NULL,1,0,'2026-11-26 06:56:09.612522','2026-11-26 06:56:09.654563','vm','{"python": "3.11.7", "vat-study": "0.1.0", "torch": "2.14.1", "numpy": "2.4.6", "ray": "2.60.0", "optuna": "5.0.0", "sqlalchemy": "2.1.9"}');
INSERT INTO "vat_trials" VALUES(6,2,'7135ed7a1b397c06','91d15d0d3e8f448c','{"eps": 1.5727840495586292}',0,'{"dataset": "digits", "data_root": null, "download": false, "idx_paths": null, "mode": "semi_supervised", "n_labeled": 100, "validation": null, "zca": false, "augment": {"translate": 0, "flip": false}, "model": "mlp", "hidden": [16], "noise_sigma": 0.0, "top_bn": true, "dropout": 0.5, "method": "vat", "eps": 1.5727840495586292, "alpha": 1.0, "xi": 0.01, "power_iterations": 1, "direction": "finite_difference", "seed": 0, "steps": 6, "batch": {"labeled": 16, "unlabeled": 32}, "optimizer": {"name": "adam", "lr": 0.002, "beta1": 0.9, "beta2": 0.999, "decay": {"kind": "exponential", "every": 600, "rate": 0.9, "start": null, "beta1_after": null}}, "eval_every": 3, "probes": {"rvadv": {"eps": 2.0, "power_iterations": 1, "size": 50, "every": null}, "grad_variance": null, "fidelity": null}, "model_path": null, "device": "cpu", "dtype": "float32"}','COMPLETE',NULL,1,1,'2026-11-26 06:56:09.677644','2026-11-26 06:56:09.713459','vm','{"python": "3.11.7", "vat-study": "0.1.0", "torch": "2.14.1", "numpy": "2.4.6", "ray": "2.60.0", "optuna": "5.0.0", "sqlalchemy": "2.1.9"}');
INSERT INTO "vat_trials" VALUES(7,1,'deadbeefdeadbeef','c0','{"eps": 3.0, "method": "vat"}',0,'{"eps": 3.0, "method": "vat", "seed": 0}','RUNNING',NULL,1,NULL,'2026-11-26 06:56:09.723240',NULL,'vm','{"python": "3.11.7", "vat-study": "0.1.0", "torch": "2.14.1", "numpy": "2.4.6", "ray": "2.60.0", "optuna": "5.0.0", "sqlalchemy": "2.1.9"}');
CREATE TABLE version_info (
	version_info_id INTEGER NOT NULL, 
	schema_version INTEGER, 
	library_version VARCHAR(256), 
	PRIMARY KEY (version_info_id), 
	CHECK (version_info_id=1)
);
INSERT INTO "version_info" VALUES(1,12,'5.0.0');
CREATE INDEX ix_vat_trials_study_id ON vat_trials (study_id);
CREATE INDEX ix_vat_trials_config_key ON vat_trials (config_key);
CREATE INDEX ix_vat_trials_status ON vat_trials (status);
CREATE INDEX ix_vat_metrics_trial_id ON vat_metrics (trial_id);
CREATE INDEX ix_vat_final_metrics_trial_id ON vat_final_metrics (trial_id);
CREATE UNIQUE INDEX ix_studies_study_name ON studies (study_name);
CREATE INDEX ix_trials_study_id ON trials (study_id);
COMMIT;
