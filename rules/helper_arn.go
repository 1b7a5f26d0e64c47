package rules

import "strings"

// ARN helpers: arnAccount, arnService, arnResource.
func init() {
	for name, part := range map[string]int{"arnService": 2, "arnAccount": 4, "arnResource": 5} {
		registerHelper(name, func(params ...any) (any, error) {
			return arnPart(params[0].(string), part), nil
		}, new(func(string) string))
	}
}

// arnPart returns field i of arn:partition:service:region:account:resource.
func arnPart(arn string, i int) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return ""
	}
	return parts[i]
}
