package validation

import (
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// ScheduleParser is the cron dialect of deployment windows: five fields
// (minute hour day-of-month month day-of-week) or a descriptor like @daily.
// The engine must parse schedules with the same parser.
var ScheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func validateWindows(ws []v1alpha1.DeploymentWindow, p *field.Path) field.ErrorList {
	errs := maxItems(nil, p, len(ws), 32)
	kinds := []v1alpha1.WindowKind{v1alpha1.WindowAllow, v1alpha1.WindowDeny}
	for i, w := range ws {
		wp := p.Index(i)
		switch w.Kind {
		case v1alpha1.WindowAllow, v1alpha1.WindowDeny:
		case "":
			errs = append(errs, field.Required(wp.Child("kind"), "must be Allow or Deny"))
		default:
			errs = append(errs, field.NotSupported(wp.Child("kind"), w.Kind, kinds))
		}
		errs = validateSchedule(errs, wp.Child("schedule"), w.Schedule)
		errs = requiredDuration(errs, wp.Child("duration"), w.Duration)
		errs = validateTimeZone(errs, wp.Child("timeZone"), w.TimeZone)
	}
	return errs
}

func validateSchedule(errs field.ErrorList, p *field.Path, s string) field.ErrorList {
	trimmed := strings.TrimSpace(s)
	switch {
	case trimmed == "":
		return append(errs, field.Required(p, "a cron expression such as \"0 9 * * 1-5\" or a descriptor such as @daily"))
	// robfig/cron accepts a zone prefix, which would silently override
	// timeZone.
	case strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ="):
		return append(errs, field.Invalid(p, s, "set the time zone in timeZone, not in the schedule"))
	// @every counts from whenever the schedule is parsed, so the window
	// would move each time the controller restarts.
	case strings.HasPrefix(trimmed, "@every"):
		return append(errs, field.Invalid(p, s, "@every is not supported: it counts from when the schedule is loaded; use a cron expression or @hourly, @daily, @weekly, @monthly, @yearly"))
	}
	// Parse the text as given: the engine will.
	if _, err := ScheduleParser.Parse(s); err != nil {
		return append(errs, field.Invalid(p, s, "must be a five-field cron expression (minute hour day-of-month month day-of-week) or a descriptor such as @daily: "+err.Error()))
	}
	return errs
}

func validateTimeZone(errs field.ErrorList, p *field.Path, tz string) field.ErrorList {
	if tz == "" {
		return errs
	}
	// "Local" loads fine but means whatever zone the machine running Sluice
	// is in, so the same manifest would behave differently per host.
	if tz == "Local" {
		return append(errs, field.Invalid(p, tz, "must be an IANA time zone name such as Europe/Berlin or UTC"))
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return append(errs, field.Invalid(p, tz, "must be an IANA time zone name such as Europe/Berlin or UTC: "+err.Error()))
	}
	return errs
}
