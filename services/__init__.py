"""Domain logic with no GraphQL in it: accounts and tokens, courses, learning state.

The GraphQL resolvers and the sync mutators both call these functions, so each rule of the
domain lives in exactly one place. Expected failures are raised as `DomainError` with a stable
`ErrorCode`; the transports map them to their own error shapes.
"""
