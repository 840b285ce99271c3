/* The options of the training commands (train, distill, qat) as one table: for each option
 * its field in ml_train_args, type, default, command-line flag and accepted old spellings, help
 * text, JSON key in a checkpoint's run arguments, and what a resumed run does with it. The trainer's
 * defaults, the run arguments a checkpoint stores, their reading on resume and the CLI's option
 * parsing and --help all come from this table: adding an option is adding a row. */
#ifndef ML_TRAIN_OPTIONS_H
#define ML_TRAIN_OPTIONS_H

#include <stddef.h>

#include "common/status.h"
#include "train/trainer.h"

typedef enum {
    ML_TOPT_STR,      /* const char * (points into argv or into the resume strings) */
    ML_TOPT_NAME,     /* char[size]: a short name (optimizer, schedule, ...) */
    ML_TOPT_INT,      /* int */
    ML_TOPT_I64,      /* int64_t */
    ML_TOPT_U64,      /* uint64_t */
    ML_TOPT_FLOAT,    /* float */
    ML_TOPT_FLAG,     /* int, 0 or 1; no value on the command line */
    ML_TOPT_STR_LIST, /* const char *[max] with an int count: every value up to the next --option */
} ml_train_opt_type;

/* What a resumed run (--resume) does with an option. */
typedef enum {
    ML_RESUME_FREE,    /* not stored: each invocation's own value (--out, --keep, --quiet, ...) */
    ML_RESUME_RECORD,  /* stored for the record only; each invocation's own value (--config, --val) */
    ML_RESUME_RESTORE, /* kept from the checkpoint unless given again, which changes it (--lr, ...) */
    ML_RESUME_MATCH,   /* kept from the checkpoint; given again it must equal the stored value (--optim) */
} ml_resume_rule;

/* When an option is written into the run arguments. */
typedef enum {
    ML_STORE_ALWAYS,
    ML_STORE_SET,   /* only when set (a string, a non-empty list) */
    ML_STORE_KD,    /* only for distillation runs (a teacher or a cache) */
    ML_STORE_CACHE, /* only for runs from a teacher-logit cache */
    ML_STORE_MIX,   /* only for mixture runs (--source) */
} ml_store_rule;

/* Commands an option belongs to (a bit mask). */
enum { ML_CMD_TRAIN = 1, ML_CMD_DISTILL = 2, ML_CMD_QAT = 4, ML_CMD_ALL = 7 };

typedef struct {
    const char *flag;        /* command-line name without "--" */
    const char *aliases;     /* other accepted spellings, space-separated (NULL: none) */
    ml_train_opt_type type;
    size_t offset;           /* of the field in ml_train_args */
    size_t size;             /* NAME: buffer size; STR_LIST: capacity */
    size_t count_offset;     /* STR_LIST: offset of its int count */
    const char *def;         /* default, parsed like a command-line value (NULL: zero / none) */
    const char *def_help;    /* the default as --help words it when not `def` (NULL: `def`) */
    const char *help;
    const char *json;        /* key in the stored run arguments (NULL: not stored) */
    ml_resume_rule resume;
    ml_store_rule store;
    int group;               /* rows of one nonzero group are restored together, and only when none of
                              * them was given again (--data/--source, --teacher/--cache) */
    int commands;            /* ML_CMD_* mask */
    int required;            /* the CLI requires it */
} ml_train_opt;

/* The table. */
const ml_train_opt *ml_train_options(int *n);
/* The row of a command-line name or alias (NULL if none). */
const ml_train_opt *ml_train_option_find(const char *flag);
/* The row whose JSON key is `key` (NULL if none). */
const ml_train_opt *ml_train_option_by_json(const char *key);

/* Set a scalar option from its command-line spelling ("4", "2e-3", "adamw"; FLAG: "1"/"0").
 * ML_ERR_ARG "--batch expects a whole number, got 'x'" on a bad value. Strings are not copied. */
ml_status ml_train_option_set(ml_train_args *a, const ml_train_opt *o, const char *value);
/* "--help" text of a row: help plus "(default ...)" when it has a default, into buf. With `preset` (a command's
 * own defaults, e.g. qat's learning rate), a number the preset changed is shown as that command's default. */
void ml_train_option_help(const ml_train_opt *o, const ml_train_args *preset, char *buf, size_t n);

/* Fill `a` from the stored run arguments of a checkpoint being resumed. given[i] says whether row i of
 * the table was given on the command line (NULL: none). RESTORE rows are read unless given; MATCH rows
 * are read, or when given compared (ML_ERR_ARG "--optim sgd differs from the checkpoint's adamw..."). Strings
 * read are copied into *strings (one allocation, freed by the caller; NULL when none). */
ml_status ml_train_args_resume(ml_train_args *a, const char *json, const int *given, char **strings);

#endif
