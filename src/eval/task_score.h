// Scoring one multiple-choice item with a model, sequence by sequence: the reference the tree
// scorer (eval.h vm_scorer_run) is tested against, and what `vmoer serve` and the cost timing use.
// It runs the model, so it sits above model/; building items and scores from logits stay in
// data/task.h, which needs no model.
#pragma once
#include "data/task.h"
#include "model/model.h"

// Runs every sequence of in through c (a context of m; reset before each) and fills r. 0 or -1.
int vm_task_score(const vm_model *m, vm_ctx *c, const vm_task_input *in, vm_task_result *r);
